package s3backend

import "testing"

func TestListCache(t *testing.T) {
	c := newListCache(2)
	c.put("a", parts([2]int64{1, 5}))
	c.put("b", parts([2]int64{1, 5}, [2]int64{2, 5}))
	if got := numbers(c.get("a")); len(got) != 1 {
		t.Fatalf("a: %v", got)
	}
	c.put("c", parts([2]int64{1, 1}))
	if c.get("b") != nil {
		t.Fatalf("b should be evicted: a was used after it")
	}
	if c.get("a") == nil || c.get("c") == nil {
		t.Fatalf("a and c should be kept")
	}
	p := parts([2]int64{1, 5})
	c.put("a", p)
	p[0].PartNumber = nil
	if got := c.get("a"); got[0].PartNumber == nil {
		t.Fatalf("put must copy the parts")
	}
	c.drop("a")
	c.put("c", nil)
	if c.get("a") != nil || c.get("c") != nil || c.order.Len() != 0 {
		t.Fatalf("drop and empty put should remove entries: %d left", c.order.Len())
	}
}
