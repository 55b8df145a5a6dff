package wasmwiz

import (
	"strconv"
	"strings"
)

// Caps on a guest's arguments and environment, whoever runs it (the API,
// `wasmwiz run`, the engine). They sit below what Linux lets execve pass: 2
// MiB of argv and envp together (ARG_MAX, a quarter of the default 8 MiB
// stack) and 128 KiB per string (MAX_ARG_STRLEN). A guest gets them through
// WASI's args_get and environ_get, which copy every string, with its NUL,
// into its linear memory: the total bounds that copy as well.
const (
	// MaxArgs bounds the arguments after argv[0].
	MaxArgs = 4096
	// MaxEnvVars bounds the environment variables.
	MaxEnvVars = 4096
	// MaxArgBytes bounds one argument, or one variable written as K=V.
	MaxArgBytes = 128 << 10
	// MaxArgvBytes bounds the arguments and environment together, as the
	// guest's buffers hold them: each argument and its NUL, each K=V and
	// its NUL.
	MaxArgvBytes = 1 << 20
)

// ArgvBudget counts arguments and environment variables against the caps
// as they come, so that a decoder stops at the first one past a cap
// instead of building the whole list first. The zero value is empty.
type ArgvBudget struct {
	args, env int
	bytes     int64
}

// AddArg counts one argument: ETOOLARGE past MaxArgs, MaxArgBytes or
// MaxArgvBytes, EINVALID for a NUL byte (WASI cannot carry one).
func (b *ArgvBudget) AddArg(a string) error {
	b.args++
	switch {
	case b.args > MaxArgs:
		return Errorf(ETOOLARGE, "more than %d arguments (the limit of args)", MaxArgs)
	case len(a) > MaxArgBytes:
		return Errorf(ETOOLARGE, "argument %d is %s, over the %s limit of one argument", b.args, FormatSize(int64(len(a))), FormatSize(MaxArgBytes))
	case strings.IndexByte(a, 0) >= 0:
		return Errorf(EINVALID, "argument %d contains a NUL byte", b.args)
	}
	return b.add(int64(len(a)) + 1)
}

// AddEnv counts one environment variable: ETOOLARGE past MaxEnvVars,
// MaxArgBytes (for K=V) or MaxArgvBytes, EINVALID for an empty name, a
// name with '=' or a NUL anywhere.
func (b *ArgvBudget) AddEnv(k, v string) error {
	b.env++
	n := int64(len(k)) + 1 + int64(len(v))
	switch {
	case b.env > MaxEnvVars:
		return Errorf(ETOOLARGE, "more than %d environment variables (the limit of env)", MaxEnvVars)
	case n > MaxArgBytes:
		return Errorf(ETOOLARGE, "environment variable %s is %s, over the %s limit of one variable (K=V)", quoteName(k), FormatSize(n), FormatSize(MaxArgBytes))
	case k == "" || strings.ContainsAny(k, "=\x00"):
		return Errorf(EINVALID, "environment variable name %q must be non-empty, without '=' or NUL", k)
	case strings.IndexByte(v, 0) >= 0:
		return Errorf(EINVALID, "environment variable %s contains a NUL byte", k)
	}
	return b.add(n + 1)
}

func (b *ArgvBudget) add(n int64) error {
	b.bytes += n
	if b.bytes > MaxArgvBytes {
		return Errorf(ETOOLARGE, "args and env are over the %s limit of both together (each string with its NUL, K=V for env)", FormatSize(MaxArgvBytes))
	}
	return nil
}

// quoteName writes an environment variable's name for a message, cut
// short when it is long.
func quoteName(k string) string {
	if len(k) > 64 {
		k = k[:64] + "…"
	}
	return strconv.Quote(k)
}

// CheckArgv returns the error of ArgvBudget for the first argument or
// environment variable of args and env past a cap, and EINVALID for a
// module name (argv[0]) with a NUL byte. Every path that runs a guest checks
// its request with it (Executor, the engine).
func CheckArgv(name string, args []string, env map[string]string) error {
	if strings.IndexByte(name, 0) >= 0 {
		return Errorf(EINVALID, "the module name contains a NUL byte")
	}
	if len(env) > MaxEnvVars {
		// Before EnvNames sorts them all.
		return Errorf(ETOOLARGE, "more than %d environment variables (the limit of env)", MaxEnvVars)
	}
	var b ArgvBudget
	for _, a := range args {
		if err := b.AddArg(a); err != nil {
			return err
		}
	}
	for _, k := range EnvNames(env) { // sorted: the same request, the same message
		if err := b.AddEnv(k, env[k]); err != nil {
			return err
		}
	}
	return nil
}
