package redis_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/inmem"
	"github.com/wasmwiz/wasmwiz/internal/limitertest"
	"github.com/wasmwiz/wasmwiz/internal/redis"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// Beyond the suite's chosen cases: a long random sequence of calls gets the
// same answers from Redis and from memory, call by call.
func TestAgreesWithInmem(t *testing.T) {
	t.Parallel()
	c := newClient(t, testenv.RedisURL(t))
	clock := testenv.NewClock(limitertest.Start)
	r := newLimiter(t, redis.Options{Client: c, Prefix: testPrefix(t, c), Now: clock.Now, Timeout: 5 * time.Second})
	m := inmem.New(inmem.Options{Now: clock.Now})
	limitSets := [][]wasmwiz.RateLimit{
		{{Name: "minute", Limit: 5, Window: time.Minute}, {Name: "day", Limit: 40, Window: 24 * time.Hour}},
		{{Name: "minute", Limit: 3, Window: time.Minute}},
		{{Name: "day", Limit: 40, Window: 24 * time.Hour}},
		{{Name: "minute", Limit: 8, Window: time.Minute}, {Name: "hour", Limit: 12, Window: time.Hour}},
	}
	advances := []time.Duration{0, 0, time.Millisecond, 999 * time.Millisecond, 7 * time.Second, 20 * time.Second, 3 * time.Minute, 2 * time.Hour}
	rng := rand.New(rand.NewPCG(4, 2))
	type held struct{ redis, mem func() }
	var slots []held
	ctx := context.Background()
	for i := range 3000 {
		clock.Add(advances[rng.IntN(len(advances))])
		key := fmt.Sprintf("user:%d", rng.IntN(3))
		switch op := rng.IntN(10); {
		case op < 7:
			limits := limitSets[rng.IntN(len(limitSets))]
			dr, err := r.Allow(ctx, key, limits)
			if err != nil {
				t.Fatalf("call %d: redis: %v", i, err)
			}
			dm, _ := m.Allow(ctx, key, limits)
			if dr != dm {
				t.Fatalf("call %d: Allow(%s, %v):\nredis  %+v\nmemory %+v", i, key, limits, dr, dm)
			}
		case op < 9:
			// ttls of 30s and more: Redis expires the set on its own clock, which
			// must not overtake the test clock while the test runs.
			max, ttl := 1+rng.IntN(3), time.Duration(30+rng.IntN(90))*time.Second
			relR, okR, err := r.Acquire(ctx, key, max, ttl)
			if err != nil {
				t.Fatalf("call %d: redis: %v", i, err)
			}
			relM, okM, _ := m.Acquire(ctx, key, max, ttl)
			if okR != okM {
				t.Fatalf("call %d: Acquire(%s, %d, %v): redis %v, memory %v", i, key, max, ttl, okR, okM)
			}
			if okR {
				slots = append(slots, held{relR, relM})
			}
		default:
			if len(slots) > 0 {
				j := rng.IntN(len(slots))
				slots[j].redis()
				slots[j].mem()
				slots = append(slots[:j], slots[j+1:]...)
			}
		}
	}
}
