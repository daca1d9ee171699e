package layout

import (
	"strings"
	"testing"
)

func TestSplitID(t *testing.T) {
	for id, want := range map[string][2]string{
		"owner/abc+mp-1":   {"owner/abc", "mp-1"},
		"abc":              {"abc", ""},
		"a+b+c":            {"a+b", "c"},
		"owner/abc+":       {"owner/abc", ""},
		"":                 {"", ""},
		"t4ws/38fa+da5b-c": {"t4ws/38fa", "da5b-c"},
	} {
		o, m := SplitID(id)
		if o != want[0] || m != want[1] {
			t.Errorf("SplitID(%q) = %q, %q; want %q, %q", id, o, m, want[0], want[1])
		}
	}
}

func TestIsInternal(t *testing.T) {
	for key, want := range map[string]bool{
		".tusgate/webhooks/x":         true,
		"uploads/.tusgate/expired/a":  true,
		"uploads/owner/abc":           false,
		"uploads/.tusgatex/a":         false,
		"uploads/owner/.tusgate":      false, // a file of that name, not the folder
		"uploads/owner/abc.tusgate/x": false,
	} {
		if got := IsInternal(key); got != want {
			t.Errorf("IsInternal(%q) = %v, want %v", key, got, want)
		}
	}
}

func TestDecodeInfo(t *testing.T) {
	info, err := DecodeInfo(strings.NewReader(`{"ID":"o/a+m","Size":5,"Offset":0,"MetaData":{"filename":"a.txt"},"Storage":{"Key":"o/a"}}`))
	if err != nil || info.ID != "o/a+m" || info.Size != 5 || info.MetaData["filename"] != "a.txt" || info.Storage["Key"] != "o/a" {
		t.Fatalf("DecodeInfo = %+v, %v", info, err)
	}
	if _, err := DecodeInfo(strings.NewReader("not json")); err == nil {
		t.Fatal("DecodeInfo accepted garbage")
	}
	huge := `{"ID":"` + strings.Repeat("a", InfoLimit) + `"}`
	if _, err := DecodeInfo(strings.NewReader(huge)); err == nil {
		t.Fatal("DecodeInfo read past InfoLimit")
	}
}

func TestWaiting(t *testing.T) {
	if got := WaitingDir("owner/abc+mp-1"); got != ".tusgate/concat/owner/abc+mp-1/" {
		t.Errorf("WaitingDir = %q", got)
	}
	for _, id := range []string{"owner/final+mp.x_y-z", "abc", "o/a%b c"} {
		name := WaitingName(id)
		if strings.Contains(name, "/") {
			t.Errorf("WaitingName(%q) = %q holds a slash", id, name)
		}
		if back, ok := WaitingFinal(name); !ok || back != id {
			t.Errorf("WaitingFinal(WaitingName(%q)) = %q, %v", id, back, ok)
		}
	}
	for _, name := range []string{"", "%zz", "a/b"} {
		if id, ok := WaitingFinal(name); ok {
			t.Errorf("WaitingFinal(%q) = %q, true", name, id)
		}
	}
}
