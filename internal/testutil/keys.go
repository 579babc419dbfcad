// Package testutil holds what tests across the module share: RSA keys made
// once per process, a clock that moves only when told, a buffer safe for
// concurrent writes and reads, callers files, and a reader of the metrics
// an admin listener exports.
package testutil

import (
	"crypto/rand"
	"crypto/rsa"
	"sync"
)

// Count is how many distinct keys RSA hands out. A 2048-bit key takes long
// enough under -race that a suite making one per test spends most of its
// time on them.
const Count = 4

var keys [Count]func() *rsa.PrivateKey

func init() {
	for i := range keys {
		keys[i] = sync.OnceValue(func() *rsa.PrivateKey {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic("testutil: " + err.Error())
			}
			return k
		})
	}
}

// RSA returns test key i (0 ≤ i < Count), the same key for the same i
// throughout the process. Keys are made on first use. Tests must not
// modify them.
func RSA(i int) *rsa.PrivateKey { return keys[i]() }
