package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wasmwiz/wasmwiz/internal/postgres"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// admin is this test binary's pool of connections for creating, emptying
// and dropping schemas: a new connection costs the server about 45 ms of
// processor time, and every test made two.
var admin struct {
	sync.Mutex
	pools map[string]*pgxpool.Pool // by server URL
}

func adminPool(server string) (*pgxpool.Pool, error) {
	admin.Lock()
	defer admin.Unlock()
	if p := admin.pools[server]; p != nil {
		return p, nil
	}
	cfg, err := pgxpool.ParseConfig(server)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 4
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	if admin.pools == nil {
		admin.pools = map[string]*pgxpool.Pool{}
		// Without testenv.Run the pools are closed with the process.
		testenv.AfterTests(closeAdminPools)
	}
	admin.pools[server] = p
	return p, nil
}

// closeAdminPools vacuums the system catalogs, then closes the pools. Every
// schema created and dropped leaves hundreds of dead rows in pg_class,
// pg_attribute, pg_depend and the like; where autovacuum is off (as on the
// CI machine) they are never cleared, every catalog lookup reads past them,
// and migrating a schema cost twice the processor time after a few runs of
// the suite. Vacuumed, their space is reused. Without the privilege the
// server skips them with a warning.
func closeAdminPools() {
	admin.Lock()
	defer admin.Unlock()
	for _, p := range admin.pools {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, _ = p.Exec(ctx, `VACUUM pg_catalog.pg_class, pg_catalog.pg_attribute, pg_catalog.pg_type,
			pg_catalog.pg_depend, pg_catalog.pg_constraint, pg_catalog.pg_index, pg_catalog.pg_trigger,
			pg_catalog.pg_proc, pg_catalog.pg_attrdef, pg_catalog.pg_sequence, pg_catalog.pg_namespace,
			pg_catalog.pg_description, pg_catalog.pg_shdepend, pg_catalog.pg_statistic`)
		cancel()
		p.Close()
	}
	admin.pools = nil
}

func adminExec(server, sql string, args ...any) error {
	p, err := adminPool(server)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = p.Exec(ctx, sql, args...)
	return err
}

// newSchema creates an empty schema with a random name and returns it.
func newSchema(t testing.TB, server string) string {
	t.Helper()
	name, err := createSchema(server)
	if err != nil {
		t.Fatalf("create schema: %v", err)
	}
	return name
}

func createSchema(server string) (string, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "wwtest_" + hex.EncodeToString(b[:])
	return name, adminExec(server, `CREATE SCHEMA `+name)
}

func dropSchema(server, name string) error {
	return adminExec(server, `DROP SCHEMA `+name+` CASCADE`)
}

// reused are the migrated schemas Migrated hands out, by server.
var reused = &schemaPool{free: map[string][]string{}, template: map[string]*template{}}

type schemaPool struct {
	sync.Mutex
	free     map[string][]string
	template map[string]*template
	off      bool // emptying failed once (no privilege, say): migrate anew
}

// template is a migrated schema no test uses: the rows a fresh one holds,
// and the shape reused ones must keep.
type template struct {
	once  sync.Once
	name  string
	shape string
	err   error
}

var schemaName = regexp.MustCompile(`^wwtest_[0-9a-f]+$`)

// take returns a migrated schema no other test uses.
func (sp *schemaPool) take(server string) (string, error) {
	sp.Lock()
	if n := len(sp.free[server]); n > 0 && !sp.off {
		name := sp.free[server][n-1]
		sp.free[server] = sp.free[server][:n-1]
		sp.Unlock()
		return name, nil
	}
	sp.Unlock()
	return migrateNew(server)
}

// give takes back the schema a test is done with: emptied and kept when
// testenv.Run will drop it after the tests, else dropped.
func (sp *schemaPool) give(server, name string) error {
	if err := sp.reset(server, name); err != nil {
		return dropSchema(server, name)
	}
	sp.Lock()
	defer sp.Unlock()
	sp.free[server] = append(sp.free[server], name)
	return nil
}

// reset empties name and gives it the template's rows, or fails.
func (sp *schemaPool) reset(server, name string) error {
	sp.Lock()
	off := sp.off
	tmpl := sp.template[server]
	if tmpl == nil {
		tmpl = &template{}
		sp.template[server] = tmpl
	}
	sp.Unlock()
	if off || !schemaName.MatchString(name) {
		return errors.New("not reused")
	}
	tmpl.once.Do(func() {
		if !testenv.AfterTests(func() { sp.dropAll() }) {
			tmpl.err = errors.New("no testenv.Run to drop kept schemas")
			return
		}
		if tmpl.name, tmpl.err = migrateNew(server); tmpl.err == nil {
			tmpl.shape, tmpl.err = shape(server, tmpl.name)
		}
	})
	if tmpl.err != nil {
		return tmpl.err
	}
	p, err := adminPool(server)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A session of the test that has just closed may take a moment to end
	// on the server.
	for wait := time.Now().Add(2 * time.Second); ; {
		var n int
		if err := p.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, name).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			break
		}
		if time.Now().After(wait) {
			return fmt.Errorf("%d sessions still use it", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	got, err := shape(server, name)
	if err != nil {
		return err
	}
	if got != tmpl.shape {
		return errors.New("its shape is not the migrations'")
	}
	// Replica mode skips every trigger, foreign keys' included: the rows
	// are deleted and copied back as they are.
	_, err = p.Exec(ctx, fmt.Sprintf(`DO $$
DECLARE r record;
BEGIN
	SET LOCAL session_replication_role = replica;
	SET LOCAL lock_timeout = '5s';
	FOR r IN SELECT tablename FROM pg_tables WHERE schemaname = '%[1]s' LOOP
		EXECUTE format('DELETE FROM %%I.%%I', '%[1]s', r.tablename);
	END LOOP;
	FOR r IN SELECT tablename FROM pg_tables WHERE schemaname = '%[2]s' LOOP
		EXECUTE format('INSERT INTO %%I.%%I OVERRIDING SYSTEM VALUE SELECT * FROM %%I.%%I', '%[1]s', r.tablename, '%[2]s', r.tablename);
	END LOOP;
	FOR r IN SELECT sequencename, start_value, last_value FROM pg_sequences WHERE schemaname = '%[2]s' LOOP
		PERFORM setval(format('%%I.%%I', '%[1]s', r.sequencename), coalesce(r.last_value, r.start_value), r.last_value IS NOT NULL);
	END LOOP;
END $$`, name, tmpl.name))
	if err != nil {
		sp.Lock()
		sp.off = true
		sp.Unlock()
	}
	return err
}

// migrateNew creates a schema and applies every migration to it.
func migrateNew(server string) (string, error) {
	name, err := createSchema(server)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := postgres.Open(ctx, withSearchPath(server, name))
	if err == nil {
		err = db.Migrate(ctx)
		db.Close()
	}
	if err != nil {
		_ = dropSchema(server, name)
		return "", err
	}
	return name, nil
}

// dropAll drops the kept schemas and the templates, once the tests are
// done: every schema a test took was given back (kept or dropped) by then.
func (sp *schemaPool) dropAll() {
	sp.Lock()
	free, templates := sp.free, sp.template
	sp.free, sp.template = map[string][]string{}, map[string]*template{}
	sp.Unlock()
	for server, names := range free {
		for _, name := range names {
			_ = dropSchema(server, name)
		}
	}
	for server, tmpl := range templates {
		if tmpl.name != "" {
			_ = dropSchema(server, tmpl.name)
		}
	}
}

// shape describes what a schema holds, without its name: relations,
// columns in order, constraints, triggers (the foreign keys' internal ones
// are named by number: their constraints stand for them) and functions.
func shape(server, name string) (string, error) {
	p, err := adminPool(server)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var s string
	err = p.QueryRow(ctx, `
SELECT coalesce(md5(string_agg(x, E'\n' ORDER BY x)), '') FROM (
	SELECT 'rel ' || c.relname || ' ' || c.relkind::text FROM pg_class c
		WHERE c.relnamespace = $1::regnamespace
	UNION ALL
	SELECT 'col ' || c.relname || ' ' || a.attnum::text || ' ' || a.attname || ' ' || a.atttypid::regtype::text || ' ' || a.attnotnull::text
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
		WHERE c.relnamespace = $1::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
	UNION ALL
	SELECT 'con ' || conname || ' ' || contype::text FROM pg_constraint WHERE connamespace = $1::regnamespace
	UNION ALL
	SELECT 'trg ' || t.tgname || ' ' || t.tgenabled::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
		WHERE c.relnamespace = $1::regnamespace AND NOT t.tgisinternal
	UNION ALL
	SELECT 'fn ' || p.proname || ' ' || md5(p.prosrc) FROM pg_proc p WHERE p.pronamespace = $1::regnamespace
) f(x)`, pgx.Identifier{name}.Sanitize()).Scan(&s)
	return s, err
}
