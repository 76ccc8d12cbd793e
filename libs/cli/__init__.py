"""`bridgectl`: the operator's command line; it talks to the bridge's gRPC APIs only."""
