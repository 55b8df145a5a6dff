package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/wasmwiz/wasmwiz"
)

const tiersUsage = `usage:
  wasmwiz tiers list
  wasmwiz tiers set NAME [--from TIER] [--runs-per-minute N] [--runs-per-day N] [--memory 256MiB]
      [--timeout 10s] [--max-module 25MiB] [--max-stdin 5MiB] [--max-output 5MiB] [--concurrent N]

set changes the named limits of a tier and keeps the others; a new tier starts
from the limits of --from (default free). Changes apply to the next request of
every replica. Every subcommand acts on WASMWIZ_DATABASE_URL as the system
administrator and applies pending migrations first.
`

// cmdTiers manages tiers: wasmwiz tiers list|set.
func cmdTiers(ctx context.Context, env *Env, args []string) error {
	sub, args, fs, err := adminSubcommand(env, "tiers", tiersUsage, args)
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
		// The name comes first, so parse what follows it.
		if len(args) == 0 || len(args[0]) > 0 && args[0][0] == '-' {
			fmt.Fprintln(env.Stderr, "wasmwiz tiers set: the tier name comes first")
			fmt.Fprint(env.Stderr, tiersUsage)
			return exitError{2}
		}
		name := args[0]
		from := fs.String("from", wasmwiz.TierFree, "for a new tier: the tier whose limits it starts from")
		var changes []func(*wasmwiz.Tier)
		intFlag := func(flagName, help string, set func(*wasmwiz.Tier, int64)) {
			fs.Func(flagName, help, func(v string) error {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return fmt.Errorf("want a whole number")
				}
				changes = append(changes, func(t *wasmwiz.Tier) { set(t, n) })
				return nil
			})
		}
		sizeFlag := func(flagName, help string, set func(*wasmwiz.Tier, int64)) {
			fs.Func(flagName, help, func(v string) error {
				n, err := wasmwiz.ParseSize(v)
				if err != nil {
					return fmt.Errorf("%s", wasmwiz.ErrorMessage(err))
				}
				changes = append(changes, func(t *wasmwiz.Tier) { set(t, n) })
				return nil
			})
		}
		intFlag("runs-per-minute", "runs per minute", func(t *wasmwiz.Tier, n int64) { t.RunsPerMinute = n })
		intFlag("runs-per-day", "runs per day", func(t *wasmwiz.Tier, n int64) { t.RunsPerDay = n })
		intFlag("concurrent", "runs in flight at once", func(t *wasmwiz.Tier, n int64) { t.MaxConcurrent = int(n) })
		sizeFlag("memory", "linear memory cap, e.g. 256MiB", func(t *wasmwiz.Tier, n int64) { t.MaxMemoryBytes = n })
		sizeFlag("max-module", "module size cap", func(t *wasmwiz.Tier, n int64) { t.MaxModuleBytes = n })
		sizeFlag("max-stdin", "stdin size cap", func(t *wasmwiz.Tier, n int64) { t.MaxStdinBytes = n })
		sizeFlag("max-output", "stdout and stderr cap, each", func(t *wasmwiz.Tier, n int64) { t.MaxOutputBytes = n })
		fs.Func("timeout", "wall time, e.g. 10s", func(v string) error {
			d, err := wasmwiz.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("%s", wasmwiz.ErrorMessage(err))
			}
			changes = append(changes, func(t *wasmwiz.Tier) { t.Timeout = d })
			return nil
		})
		if err := parseArgs(fs, args[1:], 0); err != nil {
			return err
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
	fmt.Fprintf(env.Stderr, "wasmwiz tiers: unknown subcommand %q\n", sub)
	fmt.Fprint(env.Stderr, tiersUsage)
	return exitError{2}
}

func printTiers(w io.Writer, tiers []*wasmwiz.Tier) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tRUNS/MIN\tRUNS/DAY\tMEMORY\tTIMEOUT\tMODULE\tSTDIN\tOUTPUT\tCONCURRENT")
	for _, t := range tiers {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%d\n", t.Name, t.RunsPerMinute, t.RunsPerDay,
			wasmwiz.FormatSize(t.MaxMemoryBytes), t.Timeout, wasmwiz.FormatSize(t.MaxModuleBytes),
			wasmwiz.FormatSize(t.MaxStdinBytes), wasmwiz.FormatSize(t.MaxOutputBytes), t.MaxConcurrent)
	}
	tw.Flush()
}
