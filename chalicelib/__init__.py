"""The order backbone: marketplace webhooks in, warehouse jobs out, exceptions to CS."""
