//! A real local Kubernetes control plane on loopback (in progress).
