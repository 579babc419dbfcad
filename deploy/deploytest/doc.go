// Package deploytest checks the deployment files of imsproxy — the
// Dockerfile, the compose files, the Kubernetes manifests, the Prometheus
// rules and the Grafana dashboard — against the Kubernetes API types,
// compose-go, Prometheus's own parsers and the real imsproxy binary. It is
// a module of its own so that those heavy test-only dependencies never
// enter the product's go.mod. It has no code of its own: only tests.
package deploytest
