package http_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/wasmwiz/wasmwiz"
)

// listRoutes are the routes that answer a page of a list, with a key that
// may read each, and a mock store that reports the offset it was asked for
// and answers total.
var listRoutes = []struct {
	path, key string
	store     func(f *fixture, seen func(int), total wasmwiz.ListTotal)
}{
	{"/api/v1/runs", userKey, func(f *fixture, seen func(int), total wasmwiz.ListTotal) {
		f.runs.FindRunsFn = func(_ context.Context, fl wasmwiz.RunFilter) ([]*wasmwiz.UsageRecord, wasmwiz.ListTotal, error) {
			seen(fl.Offset)
			return nil, total, nil
		}
	}},
	{"/api/v1/modules", userKey, func(f *fixture, seen func(int), total wasmwiz.ListTotal) {
		f.modules.FindModulesFn = func(_ context.Context, fl wasmwiz.ModuleFilter) ([]*wasmwiz.Module, wasmwiz.ListTotal, error) {
			seen(fl.Offset)
			return nil, total, nil
		}
	}},
	{"/api/v1/keys", userKey, keyList},
	{"/api/v1/admin/keys", adminKey, keyList},
	{"/api/v1/admin/users", adminKey, func(f *fixture, seen func(int), total wasmwiz.ListTotal) {
		f.users.FindUsersFn = func(_ context.Context, fl wasmwiz.UserFilter) ([]*wasmwiz.User, wasmwiz.ListTotal, error) {
			seen(fl.Offset)
			return nil, total, nil
		}
	}},
}

// keyList is the store of both lists of keys, a user's and the admin's.
func keyList(f *fixture, seen func(int), total wasmwiz.ListTotal) {
	f.keys.FindAPIKeysFn = func(_ context.Context, fl wasmwiz.APIKeyFilter) ([]*wasmwiz.APIKey, wasmwiz.ListTotal, error) {
		seen(fl.Offset)
		return nil, total, nil
	}
}

// TestListOffsetIsBounded: every list refuses an offset past
// wasmwiz.MaxListOffset with 400 EINVALID, saying the bound, before the
// store is asked (an OFFSET makes the database read and skip that many
// rows on every call); MaxListOffset itself reaches the store.
func TestListOffsetIsBounded(t *testing.T) {
	t.Parallel()
	for _, rt := range listRoutes {
		t.Run(strings.TrimPrefix(rt.path, "/api/v1/"), func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var asked []int
			f := newFixture(t, nil)
			rt.store(f, func(offset int) {
				mu.Lock()
				defer mu.Unlock()
				asked = append(asked, offset)
			}, wasmwiz.ListTotal{})
			for _, offset := range []int{wasmwiz.MaxListOffset + 1, 1 << 40} {
				res := f.do(request{method: "GET", path: rt.path + "?offset=" + strconv.Itoa(offset), key: rt.key})
				if res.status != 400 || res.errorCode(t) != wasmwiz.EINVALID ||
					!strings.Contains(res.errorMessage(t), strconv.Itoa(wasmwiz.MaxListOffset)) {
					t.Fatalf("offset %d: %d %s, want 400 EINVALID naming %d", offset, res.status, res.body, wasmwiz.MaxListOffset)
				}
			}
			res := f.do(request{method: "GET", path: rt.path + "?offset=" + strconv.Itoa(wasmwiz.MaxListOffset), key: rt.key})
			if res.status != 200 {
				t.Fatalf("offset MaxListOffset: %d %s, want 200", res.status, res.body)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(asked) != 1 || asked[0] != wasmwiz.MaxListOffset {
				t.Fatalf("the store was asked for offsets %v, want only %d", asked, wasmwiz.MaxListOffset)
			}
		})
	}
}

// TestListTotalCapped: a total the store counted up to wasmwiz.MaxListTotal
// and found more goes out as "total": MaxListTotal with "total_capped":
// true; an exact total with "total_capped": false.
func TestListTotalCapped(t *testing.T) {
	t.Parallel()
	for _, rt := range listRoutes {
		t.Run(strings.TrimPrefix(rt.path, "/api/v1/"), func(t *testing.T) {
			t.Parallel()
			for total, want := range map[wasmwiz.ListTotal]string{
				{Count: wasmwiz.MaxListTotal, Capped: true}: `"total":10000,"total_capped":true}`,
				{Count: 7}: `"total":7,"total_capped":false}`,
			} {
				f := newFixture(t, nil)
				rt.store(f, func(int) {}, total)
				res := f.do(request{method: "GET", path: rt.path, key: rt.key})
				if res.status != 200 || !strings.HasSuffix(strings.TrimSpace(string(res.body)), want) {
					t.Fatalf("total %+v: %d %s, want one ending %s", total, res.status, res.body, want)
				}
			}
		})
	}
}
