package wasmwiz

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Longest stored texts, in bytes.
const (
	MaxModuleNameBytes        = 128
	MaxModuleDescriptionBytes = 4096
	MaxKeyNameBytes           = 100
)

// CheckText returns EINVALID naming field when s holds a NUL byte or is not
// valid UTF-8: PostgreSQL refuses both in text columns (SQLSTATE 22021),
// and SQLite would store what PostgreSQL cannot, so both stores refuse
// them up front, alike.
func CheckText(field, s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return Errorf(EINVALID, "%s contains a NUL byte", field)
	}
	if !utf8.ValidString(s) {
		return Errorf(EINVALID, "%s is not valid UTF-8", field)
	}
	return nil
}

// CheckName is CheckText for a name, which is shown on one line: in
// listings, and in an admin's terminal (wasmwiz keys list), where a newline
// or tab could forge rows and an escape sequence could drive the terminal.
// It also refuses control characters (C0, DEL, C1), naming field.
func CheckName(field, s string) error {
	if err := CheckText(field, s); err != nil {
		return err
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return Errorf(EINVALID, "%s contains a control character (%U)", field, r)
		}
	}
	return nil
}

// Validate returns EINVALID for a module that cannot be stored: no bytes,
// a name or description that is too long, holds a NUL byte or is not
// UTF-8, or a name that holds a control character (CheckName).
func (m *Module) Validate() error {
	switch {
	case m == nil || len(m.Wasm) == 0:
		return Errorf(EINVALID, "module has no bytes")
	case len(m.Name) > MaxModuleNameBytes:
		return Errorf(EINVALID, "module name is longer than %d bytes", MaxModuleNameBytes)
	case len(m.Description) > MaxModuleDescriptionBytes:
		return Errorf(EINVALID, "module description is longer than %d bytes", MaxModuleDescriptionBytes)
	}
	if err := CheckName("module name", m.Name); err != nil {
		return err
	}
	return CheckText("module description", m.Description)
}

// Validate returns EINVALID for a filter no module can match, a name that
// holds a NUL byte or is not UTF-8, and for an offset CheckListOffset
// refuses.
func (f ModuleFilter) Validate() error {
	if err := CheckListOffset(f.Offset); err != nil {
		return err
	}
	return CheckText("name filter", f.Name)
}

// Validate returns EINVALID for an email filter that holds a NUL byte or is
// not UTF-8, and for an offset CheckListOffset refuses.
func (f UserFilter) Validate() error {
	if err := CheckListOffset(f.Offset); err != nil {
		return err
	}
	return CheckText("email filter", f.Email)
}

// Validate returns EINVALID for an offset CheckListOffset refuses.
func (f APIKeyFilter) Validate() error { return CheckListOffset(f.Offset) }

// Validate returns EINVALID for an unknown status, and for an offset
// CheckListOffset refuses.
func (f RunFilter) Validate() error {
	if err := CheckListOffset(f.Offset); err != nil {
		return err
	}
	if f.Status == "" {
		return nil
	}
	for _, s := range Statuses {
		if f.Status == s {
			return nil
		}
	}
	if err := CheckText("status filter", string(f.Status)); err != nil {
		return err
	}
	return Errorf(EINVALID, "unknown status %q", f.Status)
}

// ValidateKeyName returns EINVALID for an API key name over
// MaxKeyNameBytes, or that holds a NUL byte or a control character or is
// not UTF-8 (CheckName).
func ValidateKeyName(name string) error {
	if len(name) > MaxKeyNameBytes {
		return Errorf(EINVALID, "key name is longer than %d bytes", MaxKeyNameBytes)
	}
	return CheckName("key name", name)
}

// ValidTierName reports whether s can name a tier: 1-32 characters of a-z,
// 0-9, - and _. A lookup of any other name is ENOTFOUND without a query.
func ValidTierName(s string) bool { return validName(s) }

// Validate returns EINVALID for a change no module can take: an empty or
// too long name, a description that is too long, either holding a NUL
// byte or not UTF-8, or a name holding a control character.
func (u ModuleUpdate) Validate() error {
	if u.Name != nil {
		if *u.Name == "" || len(*u.Name) > MaxModuleNameBytes {
			return Errorf(EINVALID, "module name must be 1 to %d bytes", MaxModuleNameBytes)
		}
		if err := CheckName("module name", *u.Name); err != nil {
			return err
		}
	}
	if u.Description != nil {
		if len(*u.Description) > MaxModuleDescriptionBytes {
			return Errorf(EINVALID, "module description is longer than %d bytes", MaxModuleDescriptionBytes)
		}
		return CheckText("module description", *u.Description)
	}
	return nil
}
