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

const usersUsage = `usage:
  wasmwiz users create [--admin] [--key] --email EMAIL [--tier TIER]
  wasmwiz users list [--email EMAIL] [--limit N] [--offset N]
  wasmwiz users disable ID|EMAIL
  wasmwiz users enable ID|EMAIL
  wasmwiz users set-tier ID|EMAIL TIER

create prints the new user and, with --admin or --key, a new API key, which
is shown only this once. Every subcommand acts, as the system administrator,
on the database serve uses (WASMWIZ_DATABASE_URL, default
WASMWIZ_DATA_DIR/wasmwiz.db), which must exist; it applies pending
migrations first.
`

// cmdUsers manages users: wasmwiz users create|list|disable|enable|set-tier.
func cmdUsers(ctx context.Context, env *Env, args []string) error {
	sub, args, fs, err := adminSubcommand(env, "users", usersUsage, args)
	if fs == nil {
		return err
	}
	switch sub {
	case "create":
		admin := fs.Bool("admin", false, "make the user an admin (and print a key for it)")
		key := fs.Bool("key", false, "print a new API key for the user")
		email := fs.String("email", "", "the user's email (required)")
		tier := fs.String("tier", wasmwiz.TierFree, "the user's tier")
		if err := parseArgs(fs, args, 0); err != nil {
			return err
		}
		if *email == "" {
			return fs.usageError("--email is required")
		}
		return withStore(ctx, env, func(ctx context.Context, s Store) error {
			return usersCreate(ctx, env.Stdout, s, *email, *tier, *admin, *key || *admin)
		})
	case "list":
		email := fs.String("email", "", "only the user with this email")
		limit := fs.Int("limit", 0, fmt.Sprintf("at most this many users (0: %d; at most %d)", wasmwiz.DefaultListLimit, wasmwiz.MaxListLimit))
		offset := fs.Int("offset", 0, "skip this many users")
		if err := parseArgs(fs, args, 0); err != nil {
			return err
		}
		return withStore(ctx, env, func(ctx context.Context, s Store) error {
			users, total, err := s.FindUsers(ctx, wasmwiz.UserFilter{Email: *email, Limit: *limit, Offset: *offset})
			if err != nil {
				return err
			}
			printUsers(env.Stdout, users)
			fmt.Fprintf(env.Stdout, "%d of %s users\n", len(users), total)
			return nil
		})
	case "disable", "enable":
		if err := parseArgs(fs, args, 1); err != nil {
			return err
		}
		disabled := sub == "disable"
		return updateUser(ctx, env, fs.Arg(0), wasmwiz.UserUpdate{Disabled: &disabled})
	case "set-tier":
		if err := parseArgs(fs, args, 2); err != nil {
			return err
		}
		tier := fs.Arg(1)
		return updateUser(ctx, env, fs.Arg(0), wasmwiz.UserUpdate{Tier: &tier})
	}
	return unknownSubcommand(env, "users", sub)
}

// updateUser applies upd to the user that ref names (resolveUser) and
// prints the user as it is then.
func updateUser(ctx context.Context, env *Env, ref string, upd wasmwiz.UserUpdate) error {
	return withStore(ctx, env, func(ctx context.Context, s Store) error {
		u, err := resolveUser(ctx, s, ref)
		if err != nil {
			return err
		}
		if u, err = s.UpdateUser(ctx, u.ID, upd); err != nil {
			return err
		}
		printUsers(env.Stdout, []*wasmwiz.User{u})
		return nil
	})
}

func usersCreate(ctx context.Context, w io.Writer, s Store, email, tier string, admin, withKey bool) error {
	u := &wasmwiz.User{Email: email, Role: wasmwiz.RoleUser, Tier: tier}
	if admin {
		u.Role = wasmwiz.RoleAdmin
	}
	if err := s.CreateUser(ctx, u); err != nil {
		return err
	}
	printUsers(w, []*wasmwiz.User{u})
	if !withKey {
		return nil
	}
	k, plaintext, err := s.CreateAPIKey(ctx, u.ID, "cli", nil)
	if err != nil {
		return fmt.Errorf("user %d was created, but its key was not: %w", u.ID, err)
	}
	printNewKey(w, k, plaintext)
	return nil
}

// withStore opens the configured store as the system administrator, runs
// f and closes the store. When f changed what serving replicas cache (the
// database's cache epoch moved), it publishes the change so that their
// next request sees it (publishAdminChange).
func withStore(ctx context.Context, env *Env, f func(ctx context.Context, s Store) error) error {
	s, cfg, err := openAdminStore(ctx, env)
	if err != nil {
		return err
	}
	defer s.Close()
	before, err := s.CacheEpoch(ctx)
	if err != nil {
		return err
	}
	if err := f(wasmwiz.SystemContext(ctx), s); err != nil {
		return err
	}
	if note := publishAdminChange(ctx, cfg, s, before); note != "" {
		fmt.Fprintln(env.Stderr, note)
	}
	return nil
}

// resolveUser finds a user by id or by email.
func resolveUser(ctx context.Context, s Store, ref string) (*wasmwiz.User, error) {
	if id, err := strconv.ParseInt(ref, 10, 64); err == nil {
		return s.FindUserByID(ctx, id)
	}
	email, err := wasmwiz.NormalizeEmail(ref)
	if err != nil {
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "%q is neither a user id nor an email", ref)
	}
	users, _, err := s.FindUsers(ctx, wasmwiz.UserFilter{Email: email, Limit: 2})
	if err != nil {
		return nil, err
	}
	if len(users) != 1 || users[0].Email != email {
		return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "no user with email %s", email)
	}
	return users[0], nil
}

func printUsers(w io.Writer, users []*wasmwiz.User) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tEMAIL\tROLE\tTIER\tDISABLED\tCREATED")
	for _, u := range users {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%v\t%s\n", u.ID, u.Email, u.Role, u.Tier, u.Disabled, u.CreatedAt.UTC().Format(time.RFC3339))
	}
	tw.Flush()
}
