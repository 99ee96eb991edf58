"""Image tier: Dockerfile, skaffold.yaml and k8s/, checked without Docker, skaffold or a cluster."""
