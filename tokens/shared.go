package tokens

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/imsproxy/imsproxy/config"
)

// SharedStore is where the replicas of a fleet keep one route's token
// (fleet mode, SHARE_TOKEN). It only ever holds the token sealed: the
// SharedSource encrypts before Save and decrypts after Load.
type SharedStore interface {
	// Load returns what Save stored; nil without an error when nothing is.
	Load(ctx context.Context) ([]byte, error)
	// Save stores sealed for ttl.
	Save(ctx context.Context, sealed []byte, ttl time.Duration) error
	// Lock takes the route's exchange lock for at most ttl; ok is false
	// when another replica holds it. unlock releases it if still held.
	Lock(ctx context.Context, ttl time.Duration) (unlock func(), ok bool, err error)
	// Force reports whether a forced refresh may be made now: at most one
	// per interval for the whole fleet.
	Force(ctx context.Context, interval time.Duration) (bool, error)
}

// rejecter is a Source that is told when the upstream rejected a token it
// gave, so that it never hands that token out again (Manager.Invalidate).
type rejecter interface{ Rejected(value string) }

// sharedWait is how long a replica waits for the one that holds the
// exchange lock before it exchanges on its own; sharedPoll how often it
// looks meanwhile.
const (
	sharedWait = 5 * time.Second
	sharedPoll = 50 * time.Millisecond
)

// SharedSource is a Source shared by a fleet: one exchange per token
// lifetime for every replica. A replica whose token is due looks in the
// store first; if no newer token is there it takes the lock, looks again
// (another replica may just have finished), exchanges with its own Source
// and stores the result. A replica that finds the lock taken waits for the
// new token, and exchanges on its own after sharedWait. The token is
// stored AES-256-GCM-encrypted under a key derived (HKDF-SHA256) from the
// route's client secret and private key, so Redis, its backups and MONITOR
// never see a usable token. Redis failing makes each replica use its own
// Source, as without a fleet.
type SharedSource struct {
	own      Source
	store    SharedStore
	aead     cipher.AEAD
	aad      []byte
	now      func() time.Time
	log      *slog.Logger
	route    string
	rejected atomic.Pointer[string] // the value the upstream last rejected
}

var (
	_ Source   = (*SharedSource)(nil)
	_ rejecter = (*SharedSource)(nil)
)

// NewSharedSource shares own, the Source of route rc, through store.
func NewSharedSource(rc *config.Route, own Source, store SharedStore, now func() time.Time, log *slog.Logger) (*SharedSource, error) {
	key, err := sharedKey(rc)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SharedSource{own: own, store: store, aead: aead, now: now, log: log, route: rc.Name,
		aad: []byte("imsproxy shared token\x00" + rc.Name + "\x00" + rc.Credentials.ClientID)}, nil
}

// sharedKey derives the encryption key from what only the route's
// replicas hold: its client secret and private key.
func sharedKey(rc *config.Route) ([]byte, error) {
	c := rc.Credentials
	secret := []byte(c.ClientSecret.Reveal())
	if k := c.PrivateKey.RSA(); k != nil {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		secret = append(append(secret, 0), der...)
	}
	if len(secret) == 0 {
		// config.Load requires a client secret of jwt and oauth routes.
		return nil, fmt.Errorf("%s: a shared token is encrypted with a key derived from the client secret and private key, and route %s has neither",
			rc.Var("SHARE_TOKEN"), rc.Name)
	}
	return hkdf.Key(sha256.New, secret, []byte("imsproxy shared token v1"), "route "+rc.Name+" client "+c.ClientID, 32)
}

// Rejected implements rejecter.
func (s *SharedSource) Rejected(value string) { s.rejected.Store(&value) }

// Fetch implements Source.
func (s *SharedSource) Fetch(ctx context.Context) (Token, error) {
	var rejected string
	if p := s.rejected.Load(); p != nil {
		rejected = *p
	}
	stored, err := s.load(ctx)
	if err != nil {
		return s.alone(ctx, err)
	}
	if s.fresh(stored, rejected) {
		return *stored, nil
	}
	if stored != nil && rejected != "" && stored.Value == rejected {
		// The upstream refused the fleet's token. One forced refresh per
		// interval for the whole fleet: when another replica made one
		// lately, its token is awaited rather than another exchange.
		forced, err := s.store.Force(ctx, DefaultForceInterval)
		if err != nil {
			return s.alone(ctx, err)
		}
		if !forced {
			if t := s.await(ctx, rejected); t != nil {
				return *t, nil
			}
			return *stored, nil // as a lone proxy would: the refused token until the interval ends
		}
	}
	unlock, locked, err := s.store.Lock(ctx, DefaultFetchTimeout)
	if err != nil {
		return s.alone(ctx, err)
	}
	if !locked {
		if t := s.await(ctx, rejected); t != nil {
			return *t, nil
		}
		s.log.Warn("no shared token appeared while another replica held the exchange lock; exchanging alone", "route", s.route)
		return s.exchange(ctx)
	}
	defer unlock()
	// Another replica may have stored a token between the look and the lock.
	if stored, err := s.load(ctx); err == nil && s.fresh(stored, rejected) {
		return *stored, nil
	}
	return s.exchange(ctx)
}

// fresh reports whether t may be used instead of an exchange: valid, not
// yet due for refresh, and not the token the upstream rejected.
func (s *SharedSource) fresh(t *Token, rejected string) bool {
	now := s.now()
	return t != nil && usable(t, now) && !refreshDue(t, now) && t.Value != rejected
}

// await polls the store for a fresh token until sharedWait has passed.
func (s *SharedSource) await(ctx context.Context, rejected string) *Token {
	deadline := time.NewTimer(sharedWait)
	defer deadline.Stop()
	poll := time.NewTicker(sharedPoll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-deadline.C:
			return nil
		case <-poll.C:
			if t, err := s.load(ctx); err == nil && s.fresh(t, rejected) {
				return t
			}
		}
	}
}

// exchange fetches a token with the route's own Source and stores it for
// the fleet.
func (s *SharedSource) exchange(ctx context.Context) (Token, error) {
	t, err := s.own.Fetch(ctx)
	if err != nil {
		return t, err
	}
	if ttl := t.Expiry.Sub(s.now()); !t.Expiry.IsZero() && ttl > 0 {
		if err := s.store.Save(ctx, s.seal(t), ttl); err != nil {
			s.log.Warn("could not store the new token for the other replicas", "route", s.route, "error", err)
		}
	}
	return t, nil
}

// alone is the fallback when the store fails: the replica's own exchange.
func (s *SharedSource) alone(ctx context.Context, cause error) (Token, error) {
	s.log.Warn("shared token store unavailable; exchanging alone", "route", s.route, "error", cause)
	return s.own.Fetch(ctx)
}

// sealedToken is a token as it is encrypted.
type sealedToken struct {
	Value    string `json:"v"`
	Expiry   int64  `json:"e"` // Unix milliseconds
	Obtained int64  `json:"o"`
	ClientID string `json:"c,omitempty"`
}

func (s *SharedSource) seal(t Token) []byte {
	plain, _ := json.Marshal(sealedToken{Value: t.Value, Expiry: t.Expiry.UnixMilli(), Obtained: t.Obtained.UnixMilli(), ClientID: t.ClientID})
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	_, _ = rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plain, s.aad)
}

// load returns the stored token; nil when there is none or it cannot be
// opened (sealed under other credentials: a rotation).
func (s *SharedSource) load(ctx context.Context) (*Token, error) {
	b, err := s.store.Load(ctx)
	if err != nil || b == nil {
		return nil, err
	}
	n := s.aead.NonceSize()
	if len(b) < n {
		return nil, nil
	}
	plain, err := s.aead.Open(nil, b[:n], b[n:], s.aad)
	if err != nil {
		return nil, nil
	}
	var st sealedToken
	if json.Unmarshal(plain, &st) != nil || st.Value == "" {
		return nil, nil
	}
	return &Token{Value: st.Value, Expiry: time.UnixMilli(st.Expiry), Obtained: time.UnixMilli(st.Obtained), ClientID: st.ClientID,
		FromFleet: true}, nil
}
