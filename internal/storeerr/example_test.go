package storeerr_test

import (
	"errors"
	"fmt"

	"github.com/tusgate/tusgate/internal/storeerr"
)

// A store that finds its own state inconsistent marks the error where it
// finds it; the mark survives wrapping, and the store wrapper answers the
// request with a 500 that tells clients not to retry.
func ExamplePermanent() {
	err := storeerr.Permanent(fmt.Errorf("s3stream: %s holds %d bytes, not the %d the write starts at", "owner/abc", 5, 7))
	err = fmt.Errorf("writing part 2: %w", err)
	fmt.Println(storeerr.IsPermanent(err))
	fmt.Println(storeerr.IsPermanent(errors.New("connection reset by peer")))
	fmt.Println(err)
	// Output:
	// true
	// false
	// writing part 2: s3stream: owner/abc holds 5 bytes, not the 7 the write starts at
}
