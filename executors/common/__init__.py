"""What the executors share: request/response schemas and request errors."""
