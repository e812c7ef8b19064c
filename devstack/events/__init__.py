"""The local event runner: Lambda's event source mappings and EventBridge schedules, without AWS.

`chalice local` serves only HTTP and moto's server invokes nothing, so this package does locally
what AWS does in the cloud: it polls the app's SQS queues and DynamoDB streams, fires its
schedules, and calls the same handlers with the event shapes Lambda would give them.

Failures are handled as in the cloud, so retries and dead letters can be exercised locally:

* SQS: a raising handler deletes nothing; a ``batchItemFailures`` response deletes all but the
  listed messages (``ReportBatchItemFailures``). Failed messages become visible again after
  ``retry_visibility_seconds`` (default 2 s) rather than after the queue's full visibility
  timeout, so local retries are quick. The queue's RedrivePolicy, applied by the SQS endpoint
  on receive, moves a message to its dead-letter queue after ``maxReceiveCount`` receives.
* DynamoDB streams: as a mapping with ``ReportBatchItemFailures``, ``MaximumRetryAttempts``
  (``max_retry_attempts``) and an on-failure SQS destination (``stream_failure_queue_url``).
  Batches are not bisected (``BisectBatchOnFunctionError``): a failing batch is retried whole,
  or from the checkpoint a partial batch response names.
* Schedules: EventBridge invokes asynchronously and Lambda retries a failed async invocation
  twice; so does the runner, after ``schedule_retry_delays`` (seconds here, minutes in AWS).

Handlers get JSON-decoded events and must return JSON-serializable results, as in Lambda.
The pure parts (rate expressions, event builders) do no I/O and are unit-tested on their own.

  schedules  rate(...) expressions and when they fire (cron(...) is refused)
  shapes     Lambda's event shapes, partial batch responses, the context object
  pollers    one poller per SQS queue and per DynamoDB stream
  runner     EventRunner: reads the app, drives the pollers and schedules, invokes handlers
  clock      UTC helpers shared by the others
"""

from devstack.events.runner import EventRunner

__all__ = ["EventRunner"]
