//go:build tools
// +build tools

// Package tools names the upstream programs this module builds, so that `go mod tidy` keeps
// their requirements.
package tools

import (
	_ "github.com/containernetworking/plugins/plugins/meta/flannel"
)
