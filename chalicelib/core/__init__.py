"""What every capability stands on: AWS clients, settings, errors, time and the work calendar,
the one outbound HTTP sender, DynamoDB helpers, signature and payload checks, rate limits.
Imports nothing above core."""
