//go:build !race

package aemlinks

const raceEnabled = false
