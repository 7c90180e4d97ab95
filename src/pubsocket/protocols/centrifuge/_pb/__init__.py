"""protoc output for centrifugal/protocol's client.proto (generate.sh; `make proto`)."""
