//go:build race

package aemlinks

const raceEnabled = true
