// Package cluster runs a real Kubernetes cluster on one machine (etcd, kube-apiserver with RBAC,
// kube-controller-manager, kube-scheduler, and real kubelets on their own containerd, each node in
// its own mount and network namespace), the RDS simulator as the RDS, and rds-csi installed with
// its Helm chart from images in a loopback registry, so that tests and benchmarks see the driver
// called by the real sidecars, controllers and kubelet.
package cluster
