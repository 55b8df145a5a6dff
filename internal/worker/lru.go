package worker

import "container/list"

// lru is a least-recently-used set of keys bounded by the sum of their sizes.
// A worker keeps its modules in one, and the pool keeps a mirror of each
// worker's in another: both see the same adds in the same order and evict
// the same keys, so the pool knows which modules a worker holds without
// asking. The newest key is kept even when it alone is over the budget.
type lru struct {
	budget int64
	used   int64
	order  *list.List // front: most recently used
	items  map[string]*list.Element
}

type lruItem struct {
	key   string
	size  int64
	value any
}

func newLRU(budget int64) *lru {
	return &lru{budget: budget, order: list.New(), items: map[string]*list.Element{}}
}

// get returns the value of key without changing its recency.
func (c *lru) get(key string) (any, bool) {
	el, ok := c.items[key]
	if !ok {
		return nil, false
	}
	return el.Value.(*lruItem).value, true
}

// has reports whether key is held.
func (c *lru) has(key string) bool {
	_, ok := c.items[key]
	return ok
}

// add inserts key, or marks it most recently used when present, then evicts
// the least recently used keys until the budget holds.
func (c *lru) add(key string, size int64, value any) {
	if el, ok := c.items[key]; ok {
		c.order.MoveToFront(el)
		return
	}
	c.items[key] = c.order.PushFront(&lruItem{key: key, size: size, value: value})
	c.used += size
	for c.used > c.budget && c.order.Len() > 1 {
		el := c.order.Back()
		it := el.Value.(*lruItem)
		c.order.Remove(el)
		delete(c.items, it.key)
		c.used -= it.size
	}
}

// len returns the number of keys held.
func (c *lru) len() int { return c.order.Len() }

// remove deletes key when held.
func (c *lru) remove(key string) {
	if el, ok := c.items[key]; ok {
		c.order.Remove(el)
		delete(c.items, key)
		c.used -= el.Value.(*lruItem).size
	}
}
