package devissuer

import (
	"crypto/rand"
	"strings"
	"sync"
	"time"
)

// The device authorization grant (RFC 8628) of the development issuer: a
// command-line client asks for a device code, a person approves its user
// code for a user name at the verification page, and the client's polling
// of the token endpoint then gets tokens for that user.

const (
	// DeviceCodeGrant is the grant_type of RFC 8628 §3.4.
	DeviceCodeGrant = "urn:ietf:params:oauth:grant-type:device_code"

	deviceCodePath   = "/device/code"
	verificationPath = "/device"

	// deviceCodeTTL is how long a device code waits for approval.
	deviceCodeTTL = 10 * time.Minute
	// devicePollInterval is the polling interval handed to clients, in
	// seconds: short, since approval here takes one form post.
	devicePollInterval = 1
	// maxPendingDevices bounds the memory pending device codes may take.
	maxPendingDevices = 256

	// userCodeAlphabet has no vowels (no words) and no look-alike characters
	// (RFC 8628 §6.1).
	userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"
)

// deviceAuth is one pending device authorization.
type deviceAuth struct {
	userCode string // normalized: 8 characters, no dash
	scope    string // normalized
	expires  time.Time
	user     string // set once approved
}

// devices holds pending device authorizations, the issuer's only mutable
// state. Codes live in memory: a restart forgets them, and a client then
// asks for a new one.
type devices struct {
	mu     sync.Mutex
	byCode map[string]*deviceAuth // by device_code
	byUser map[string]string      // user code → device_code
}

func newDevices() *devices {
	return &devices{byCode: map[string]*deviceAuth{}, byUser: map[string]string{}}
}

// sweep forgets expired authorizations. Called with d.mu held.
func (d *devices) sweep(now time.Time) {
	for code, a := range d.byCode {
		if !now.Before(a.expires) {
			delete(d.byCode, code)
			delete(d.byUser, a.userCode)
		}
	}
}

// start records a new pending authorization and returns its device code
// and its user code (formatted XXXX-XXXX).
func (d *devices) start(scope string, now time.Time) (deviceCode, userCode string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sweep(now)
	if len(d.byCode) >= maxPendingDevices {
		return "", "", &requestError{msg: "too many pending device authorizations; try again later"}
	}
	deviceCode = rand.Text()
	for {
		userCode = newUserCode()
		if _, taken := d.byUser[userCode]; !taken {
			break
		}
	}
	d.byCode[deviceCode] = &deviceAuth{userCode: userCode, scope: scope, expires: now.Add(deviceCodeTTL)}
	d.byUser[userCode] = deviceCode
	return deviceCode, formatUserCode(userCode), nil
}

// approve grants the pending authorization with this user code to user.
func (d *devices) approve(userCode, user string, now time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sweep(now)
	code, ok := d.byUser[normalizeUserCode(userCode)]
	if !ok {
		return &requestError{msg: "unknown or expired code; ask the device for a new one"}
	}
	a := d.byCode[code]
	if a.user != "" {
		return &requestError{msg: "this code is already approved"}
	}
	a.user = user
	return nil
}

// pollResult is what a token request with a device code finds.
type pollResult int

const (
	pollUnknown pollResult = iota // no such device code (or used up)
	pollPending
	pollExpired
	pollApproved
)

// poll looks up a device code. An approved authorization is handed out
// once: it is forgotten by the poll that returns it.
func (d *devices) poll(deviceCode string, now time.Time) (res pollResult, user, scope string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.byCode[deviceCode]
	switch {
	case !ok:
		return pollUnknown, "", ""
	case !now.Before(a.expires):
		delete(d.byCode, deviceCode)
		delete(d.byUser, a.userCode)
		return pollExpired, "", ""
	case a.user == "":
		return pollPending, "", ""
	}
	delete(d.byCode, deviceCode)
	delete(d.byUser, a.userCode)
	return pollApproved, a.user, a.scope
}

// newUserCode returns 8 random characters of userCodeAlphabet.
func newUserCode() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	for i := range b {
		// 256 is not a multiple of 20; the bias is irrelevant for a dev code.
		b[i] = userCodeAlphabet[int(b[i])%len(userCodeAlphabet)]
	}
	return string(b[:])
}

func formatUserCode(c string) string { return c[:4] + "-" + c[4:] }

// normalizeUserCode accepts what a person types: any case, with or without
// the dash and spaces.
func normalizeUserCode(s string) string {
	s = strings.ToUpper(s)
	return strings.Map(func(r rune) rune {
		if r == '-' || r == ' ' {
			return -1
		}
		return r
	}, s)
}

// deviceCodeResponse is RFC 8628 §3.2's answer.
type deviceCodeResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

func (i *Issuer) newDeviceCode(scope string) (deviceCodeResponse, error) {
	scope, err := normalizeScope(scope)
	if err != nil {
		return deviceCodeResponse{}, err
	}
	deviceCode, userCode, err := i.devices.start(scope, i.now())
	if err != nil {
		return deviceCodeResponse{}, err
	}
	i.log.Info("dev issuer: device authorization started", "user_code", userCode)
	verify := i.endpoint(verificationPath)
	return deviceCodeResponse{
		DeviceCode:              deviceCode,
		UserCode:                userCode,
		VerificationURI:         verify,
		VerificationURIComplete: verify + "?user_code=" + userCode,
		ExpiresIn:               int64(deviceCodeTTL / time.Second),
		Interval:                devicePollInterval,
	}, nil
}

// approveDevice approves a user code for a user name.
func (i *Issuer) approveDevice(userCode, user string) error {
	if err := validateUser(user); err != nil {
		return err
	}
	if err := i.devices.approve(userCode, user, i.now()); err != nil {
		return err
	}
	i.log.Info("dev issuer: device authorization approved", "user_code", formatUserCode(normalizeUserCode(userCode)), "sub", user)
	return nil
}
