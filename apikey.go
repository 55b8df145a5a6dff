package wasmwiz

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// APIKeyPrefix starts every API key.
const APIKeyPrefix = "ww_"

// apiKeyAlphabet is base62: 40 characters carry 238 bits from crypto/rand.
const apiKeyAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// apiKeyRandomLen is the number of random characters after the prefix.
const apiKeyRandomLen = 40

// APIKeyVisiblePrefixLen is how much of a key is kept in clear for listings.
const APIKeyVisiblePrefixLen = len(APIKeyPrefix) + 8

// APIKey is a credential of a user. The plaintext exists only in the answer
// to its creation; the store keeps its SHA-256 digest. The API sends it as
// api.APIKey, without the digest.
type APIKey struct {
	ID         int64
	UserID     int64
	Name       string
	Prefix     string // first characters, for listings
	Digest     string // hex SHA-256 of the plaintext
	CreatedAt  time.Time
	LastUsedAt *time.Time
	ExpiresAt  *time.Time
	RevokedAt  *time.Time
}

// Active reports whether k may authenticate at now.
func (k *APIKey) Active(now time.Time) bool {
	return k.RevokedAt == nil && (k.ExpiresAt == nil || now.Before(*k.ExpiresAt))
}

// GenerateAPIKey returns a new plaintext key from crypto/rand.
func GenerateAPIKey() (string, error) {
	buf := make([]byte, apiKeyRandomLen)
	if _, err := rand.Read(buf); err != nil {
		return "", WrapError(EINTERNAL, err, "cannot generate key")
	}
	var sb strings.Builder
	sb.WriteString(APIKeyPrefix)
	for _, b := range buf {
		// 256 % 62 != 0, so reject-and-retry would be uniform; the bias of a
		// plain modulo is below 1% per character and costs < 0.1 bit of 238.
		sb.WriteByte(apiKeyAlphabet[int(b)%len(apiKeyAlphabet)])
	}
	return sb.String(), nil
}

// HashAPIKey returns the hex SHA-256 digest under which a key is stored.
func HashAPIKey(plaintext string) string {
	sum := sha256.Sum256([]byte(plaintext))
	return hex.EncodeToString(sum[:])
}

// LooksLikeAPIKey reports whether s has the shape of a key, so that garbage
// is refused before a database lookup.
func LooksLikeAPIKey(s string) bool {
	if !strings.HasPrefix(s, APIKeyPrefix) || len(s) < len(APIKeyPrefix)+32 || len(s) > 128 {
		return false
	}
	for _, r := range s[len(APIKeyPrefix):] {
		if !strings.ContainsRune(apiKeyAlphabet, r) {
			return false
		}
	}
	return true
}

// Bounds on a user's keys. Creating a key is free and each is a row: a
// user holds at most MaxActiveAPIKeys keys that can authenticate (neither
// revoked nor expired), and creating a key deletes the user's revoked or
// expired keys but the KeptInactiveAPIKeys revoked or expired last, so that a loop of
// creating and revoking keys cannot grow the table either.
const (
	MaxActiveAPIKeys    = 100
	KeptInactiveAPIKeys = 100
)

// CheckActiveAPIKeys returns ECONFLICT when user userID, who holds active
// keys that can authenticate, may not get another. The stores call it in
// the transaction that inserts the key, after counting active.
func CheckActiveAPIKeys(userID, active int64) error {
	if active < MaxActiveAPIKeys {
		return nil
	}
	return Errorf(ECONFLICT, "user %d has %d active API keys, the most allowed: revoke one to create another", userID, active)
}

// APIKeyFilter selects keys. Admins may set UserID to list another user's keys;
// for other callers it is ignored and their own keys are listed.
type APIKeyFilter struct {
	UserID         int64
	IncludeRevoked bool
	Limit          int
	Offset         int
}

// APIKeyService stores API keys.
type APIKeyService interface {
	// CreateAPIKey creates a key for userID (the caller's own unless the
	// caller is an admin), fills k and returns the plaintext, which is never
	// stored. ENOTFOUND for another user's id (non-admins) or an unknown user;
	// ECONFLICT when the user already holds MaxActiveAPIKeys active keys
	// (CheckActiveAPIKeys), decided under concurrent creations. It deletes
	// the user's revoked or expired keys but the KeptInactiveAPIKeys revoked
	// or expired last.
	CreateAPIKey(ctx context.Context, userID int64, name string, expiresAt *time.Time) (k *APIKey, plaintext string, err error)
	// Authenticate finds the active key with this plaintext and its enabled
	// user. EUNAUTHORIZED for anything else (unknown, revoked, expired,
	// disabled user), never saying which. It needs no caller in ctx. The
	// user's current tier is read in the same query into User.TierLimits, so
	// that an execute needs no second lookup.
	Authenticate(ctx context.Context, plaintext string) (*User, *APIKey, error)
	// FindAPIKeys lists keys, newest first, with the matching count up to
	// MaxListTotal. EINVALID for an offset past MaxListOffset.
	FindAPIKeys(ctx context.Context, filter APIKeyFilter) ([]*APIKey, ListTotal, error)
	// RevokeAPIKey revokes a key of the caller (or any key, for admins) and
	// reports whether this call revoked it: revoking a revoked key succeeds
	// and changes nothing (false), so that it leaves the cache epoch alone.
	// ENOTFOUND for another user's key.
	RevokeAPIKey(ctx context.Context, id int64) (revoked bool, err error)
}
