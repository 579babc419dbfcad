package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// flags is a command's flag set with imsproxy's conventions: -h (or
// -help) prints the usage on stdout and exits 0; an unknown flag, or more
// arguments than the command takes, prints the problem and the usage on
// stderr and exits 2.
type flags struct {
	*flag.FlagSet
	name, usage    string
	stdout, stderr io.Writer
}

// newFlags returns the flags of command name, whose usage is the text
// printed before the flags' defaults.
func newFlags(name, usage string, stdout, stderr io.Writer) *flags {
	fs := flag.NewFlagSet("imsproxy "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse errors are printed by parse, once
	fs.Usage = func() {}
	return &flags{FlagSet: fs, name: name, usage: usage, stdout: stdout, stderr: stderr}
}

// parse parses args, which may hold up to maxArgs arguments after the
// flags. When it returns false the command ends with code.
func (f *flags) parse(args []string, maxArgs int) (code int, ok bool) {
	err := f.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		f.printUsage(f.stdout)
		return 0, false
	case err != nil:
		fmt.Fprintf(f.stderr, "imsproxy %s: %v\n\n", f.name, err)
		f.printUsage(f.stderr)
		return 2, false
	case f.NArg() > maxArgs:
		fmt.Fprintf(f.stderr, "imsproxy %s: unexpected argument %q\n\n", f.name, f.Arg(maxArgs))
		f.printUsage(f.stderr)
		return 2, false
	}
	return 0, true
}

func (f *flags) printUsage(w io.Writer) {
	fmt.Fprint(w, f.usage)
	var defaults strings.Builder
	f.SetOutput(&defaults)
	f.PrintDefaults()
	f.SetOutput(io.Discard)
	if defaults.Len() > 0 {
		fmt.Fprint(w, "\nflags:\n", defaults.String())
	}
}
