//go:build tools
// +build tools

// Package tools names the upstream programs this module builds, so that `go mod tidy` keeps
// their requirements.
package tools

import (
	_ "go.universe.tf/metallb/controller"
	_ "go.universe.tf/metallb/speaker"
)
