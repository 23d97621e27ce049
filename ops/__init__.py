"""Operations: health checks, the /metrics endpoint and the commands on-call engineers run
against a deployment. It wires `sagas`, `bookings` and the infrastructure together, like config."""
