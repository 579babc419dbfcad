package cache

import (
	"bytes"
	"reflect"
	"testing"
	"time"
)

func TestEntryEncoding_RoundTripsAndRefusesWhatIsNotAnEntry(t *testing.T) {
	e := &entry{key: "k\x00ey", body: []byte(`{"files":[]}`), stored: time.Unix(1764700000, 123456789),
		header:      []headerField{{"Content-Type", []string{"application/json"}}, {"Vary", []string{"Accept-Encoding", "Accept-Language"}}},
		plainLength: []string{"42"}}
	b := encodeEntry(e)
	got := decodeEntry(e.key, b)
	if got == nil {
		t.Fatal("decodeEntry refused an encoded entry")
	}
	if !got.stored.Equal(e.stored) || !bytes.Equal(got.body, e.body) || !reflect.DeepEqual(got.header, e.header) ||
		!reflect.DeepEqual(got.plainLength, e.plainLength) || got.size <= int64(len(e.body)) {
		t.Errorf("round trip: got %+v, want %+v", got, e)
	}
	for name, in := range map[string][]byte{
		"another key":      b,
		"empty":            nil,
		"another format":   append([]byte{9}, b[1:]...),
		"truncated header": b[:len(b)-len(e.body)-3],
	} {
		key := e.key
		if name == "another key" {
			key = "other"
		}
		if decodeEntry(key, in) != nil {
			t.Errorf("%s: decoded", name)
		}
	}
}
