"""The cluster side: Kubernetes manifests, policies, dashboards and the OCI image of a Wasm model."""
