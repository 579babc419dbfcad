//go:build !unix

package nodejs

import "testing"

// lock does nothing where flock is missing: run `npm ci` in integration/
// before the tests there.
func lock(testing.TB, string) func() { return func() {} }
