//go:build tools
// +build tools

// Package tools names the upstream programs this module builds, so that `go mod tidy` keeps
// their requirements.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "go.etcd.io/etcd/etcdctl/v3"
)
