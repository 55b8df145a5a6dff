package postgres_test

import (
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/postgres/pgtest"

	"github.com/wasmwiz/wasmwiz/internal/storetest"
)

// TestConformance runs the suite every store passes, each test in a fresh
// schema.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store { return newDB(t) })
}

// TestMigrations migrates an empty schema step by step.
func TestMigrations(t *testing.T) {
	storetest.RunMigrations(t, func(t *testing.T) storetest.Migrating { return openURL(t, pgtest.Schema(t), false) })
}
