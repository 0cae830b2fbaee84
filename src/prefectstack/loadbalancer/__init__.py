"""The load balancer in front of the API replicas: nginx's configuration for
both modes and the TLS certificate it serves."""
