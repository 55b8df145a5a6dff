package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

const keysUsage = `usage:
  wasmwiz keys create --user ID|EMAIL [--name NAME] [--expires 720h]
  wasmwiz keys list [--user ID|EMAIL] [--revoked] [--limit N] [--offset N]
  wasmwiz keys revoke ID

create prints the new key, which is shown only this once; the database keeps
its SHA-256 digest. A lost admin key is replaced the same way:
  wasmwiz keys create --user admin@localhost
Every subcommand acts, as the system administrator, on the database serve
uses (WASMWIZ_DATABASE_URL, default WASMWIZ_DATA_DIR/wasmwiz.db), which must
exist; it applies pending migrations first.
`

// cmdKeys manages API keys: wasmwiz keys create|list|revoke.
func cmdKeys(ctx context.Context, env *Env, args []string) error {
	sub, args, fs, err := adminSubcommand(env, "keys", keysUsage, args)
	if fs == nil {
		return err
	}
	switch sub {
	case "create":
		user := fs.String("user", "", "the key's user, by id or email (required)")
		name := fs.String("name", "", "a name to recognise the key by")
		expires := fs.String("expires", "", "lifetime, e.g. 720h (empty: never expires)")
		if err := parseArgs(fs, args, 0); err != nil {
			return err
		}
		if *user == "" {
			return fs.usageError("--user is required")
		}
		var lifetime time.Duration
		if *expires != "" {
			d, err := wasmwiz.ParseDuration(*expires)
			if err != nil {
				return err
			}
			if d <= 0 {
				return wasmwiz.Errorf(wasmwiz.EINVALID, "--expires must be positive")
			}
			lifetime = d
		}
		return withStore(ctx, env, func(ctx context.Context, s Store) error {
			u, err := resolveUser(ctx, s, *user)
			if err != nil {
				return err
			}
			var expiresAt *time.Time
			if lifetime > 0 {
				t := time.Now().UTC().Add(lifetime)
				expiresAt = &t
			}
			k, plaintext, err := s.CreateAPIKey(ctx, u.ID, *name, expiresAt)
			if err != nil {
				return err
			}
			printNewKey(env.Stdout, k, plaintext)
			return nil
		})
	case "list":
		user := fs.String("user", "", "only this user's keys, by id or email")
		revoked := fs.Bool("revoked", false, "include revoked keys")
		limit := fs.Int("limit", 0, fmt.Sprintf("at most this many keys (0: %d; at most %d)", wasmwiz.DefaultListLimit, wasmwiz.MaxListLimit))
		offset := fs.Int("offset", 0, "skip this many keys")
		if err := parseArgs(fs, args, 0); err != nil {
			return err
		}
		return withStore(ctx, env, func(ctx context.Context, s Store) error {
			filter := wasmwiz.APIKeyFilter{IncludeRevoked: *revoked, Limit: *limit, Offset: *offset}
			if *user != "" {
				u, err := resolveUser(ctx, s, *user)
				if err != nil {
					return err
				}
				filter.UserID = u.ID
			}
			keys, total, err := s.FindAPIKeys(ctx, filter)
			if err != nil {
				return err
			}
			printKeys(env.Stdout, keys)
			fmt.Fprintf(env.Stdout, "%d of %s keys\n", len(keys), total)
			return nil
		})
	case "revoke":
		if err := parseArgs(fs, args, 1); err != nil {
			return err
		}
		id, err := strconv.ParseInt(fs.Arg(0), 10, 64)
		if err != nil {
			return wasmwiz.Errorf(wasmwiz.EINVALID, "%q is not a key id (keys list shows them)", fs.Arg(0))
		}
		return withStore(ctx, env, func(ctx context.Context, s Store) error {
			revoked, err := s.RevokeAPIKey(ctx, id)
			if err != nil {
				return err
			}
			if !revoked {
				fmt.Fprintf(env.Stdout, "key %d was revoked already\n", id)
				return nil
			}
			fmt.Fprintf(env.Stdout, "key %d revoked\n", id)
			return nil
		})
	}
	return unknownSubcommand(env, "keys", sub)
}

// printNewKey prints a key that was just created, with its plaintext.
func printNewKey(w io.Writer, k *wasmwiz.APIKey, plaintext string) {
	expires := "never"
	if k.ExpiresAt != nil {
		expires = k.ExpiresAt.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(w, "key %d for user %d (name %q, expires %s):\n%s\n", k.ID, k.UserID, k.Name, expires, plaintext)
	fmt.Fprintln(w, "Store it now: it is not shown again.")
}

func printKeys(w io.Writer, keys []*wasmwiz.APIKey) {
	opt := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tNAME\tPREFIX\tCREATED\tLAST USED\tEXPIRES\tREVOKED")
	for _, k := range keys {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s…\t%s\t%s\t%s\t%s\n", k.ID, k.UserID, k.Name, k.Prefix,
			k.CreatedAt.UTC().Format(time.RFC3339), opt(k.LastUsedAt), opt(k.ExpiresAt), opt(k.RevokedAt))
	}
	tw.Flush()
}
