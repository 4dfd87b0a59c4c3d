//go:build tools
// +build tools

// Package tools names the upstream programs this module builds, so that `go mod tidy` keeps
// their requirements.
package tools

import (
	_ "github.com/containerd/containerd/cmd/containerd"
	_ "github.com/containerd/containerd/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/cmd/ctr"
)
