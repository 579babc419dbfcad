package testutil

import "testing"

func TestRSA_SameKeyPerIndexDistinctAcrossIndexes(t *testing.T) {
	first, again := RSA(0), RSA(0)
	if first != again {
		t.Error("RSA(0) made a second key")
	}
	if RSA(0).Equal(RSA(1)) {
		t.Error("RSA(0) and RSA(1) are the same key")
	}
	if bits := RSA(1).N.BitLen(); bits != 2048 {
		t.Errorf("key of %d bits, want 2048", bits)
	}
}
