package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/wasmwiz/wasmwiz"
)

// tiersUsage is the help of `wasmwiz tiers`; its flags come from the tier
// fields (wasmwiz.TierFields).
func tiersUsage() string {
	var b strings.Builder
	b.WriteString("usage:\n  wasmwiz tiers list\n  wasmwiz tiers set NAME [--from TIER]")
	for _, f := range wasmwiz.TierFields() {
		fmt.Fprintf(&b, " [--%s %s]", f.Flag, f.Format(f.Get(wasmwiz.DefaultTiers()[0])))
	}
	b.WriteString("\n\n" + tiersSetText + `

limits:
`)
	for _, f := range wasmwiz.TierFields() {
		fmt.Fprintf(&b, "  --%-18s %s\n", f.Flag, f.Help)
	}
	return b.String()
}

const tiersSetText = `set changes the named limits of a tier and keeps the others; a new tier starts
from the limits of --from (default free). A per-run limit above the server's
maximum (WASMWIZ_MAX_TIMEOUT, WASMWIZ_MAX_MEMORY) is refused. Changes apply to
the next request of every replica. Every subcommand acts, as the system
administrator, on the database serve uses (WASMWIZ_DATABASE_URL, default
WASMWIZ_DATA_DIR/wasmwiz.db), which must exist; it applies pending
migrations first.`

// cmdTiers manages tiers: wasmwiz tiers list|set.
func cmdTiers(ctx context.Context, env *Env, args []string) error {
	sub, args, fs, err := adminSubcommand(env, "tiers", tiersUsage(), args)
	if fs == nil {
		return err
	}
	switch sub {
	case "list":
		if err := parseArgs(fs, args, 0); err != nil {
			return err
		}
		return withStore(ctx, env, func(ctx context.Context, s Store) error {
			tiers, err := s.ListTiers(ctx)
			if err != nil {
				return err
			}
			printTiers(env.Stdout, tiers)
			return nil
		})
	case "set":
		fs.help = "usage: wasmwiz tiers set NAME [flags]\n\n" + tiersSetText
		from := fs.String("from", wasmwiz.TierFree, "for a new tier: the tier whose limits it starts from")
		var changes []func(*wasmwiz.Tier)
		for _, f := range wasmwiz.TierFields() {
			fs.Func(f.Flag, f.Help, func(v string) error {
				n, err := f.Parse(v)
				if err != nil {
					return fmt.Errorf("%s", wasmwiz.ErrorMessage(err))
				}
				changes = append(changes, func(t *wasmwiz.Tier) { f.Set(t, n) })
				return nil
			})
		}
		// The name may come before the flags (as the usage shows) or after.
		var name string
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			name = args[0]
			if err := parseArgs(fs, args[1:], 0); err != nil {
				return err
			}
		} else {
			if err := fs.parse(args); err != nil {
				return err
			}
			if fs.NArg() != 1 {
				return fs.usageError("name one tier: wasmwiz tiers set NAME [flags]")
			}
			name = fs.Arg(0)
		}
		return withStore(ctx, env, func(ctx context.Context, s Store) error {
			t, err := s.FindTier(ctx, name)
			created := false
			if wasmwiz.ErrorCode(err) == wasmwiz.ENOTFOUND {
				if t, err = s.FindTier(ctx, *from); err != nil {
					return err
				}
				t.Name, created = name, true
			}
			if err != nil {
				return err
			}
			for _, change := range changes {
				change(t)
			}
			if err := t.Validate(); err != nil {
				return err
			}
			cfg, err := LoadConfig(env.Getenv)
			if err != nil {
				return err
			}
			if err := t.CheckMax(cfg.MaxLimits()); err != nil {
				return err
			}
			if err := s.PutTier(ctx, t); err != nil {
				return err
			}
			if created {
				fmt.Fprintf(env.Stdout, "tier %s created\n", name)
			} else {
				fmt.Fprintf(env.Stdout, "tier %s updated\n", name)
			}
			printTiers(env.Stdout, []*wasmwiz.Tier{t})
			return nil
		})
	}
	return unknownSubcommand(env, "tiers", sub)
}

func printTiers(w io.Writer, tiers []*wasmwiz.Tier) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "NAME")
	for _, f := range wasmwiz.TierFields() {
		fmt.Fprint(tw, "\t"+strings.ToUpper(f.Flag))
	}
	fmt.Fprintln(tw)
	for _, t := range tiers {
		fmt.Fprint(tw, t.Name)
		for _, f := range wasmwiz.TierFields() {
			fmt.Fprint(tw, "\t"+f.Format(f.Get(t)))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}
