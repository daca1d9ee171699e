package config

import (
	"crypto/tls"
	"fmt"
	"os"
	"strings"
)

// Resolve reads the files the settings name, so that Validate checks what
// they hold and the server finds it in the Config: RedisPassword from
// --redis-password-file (with --redis-url; the file wins over
// TUSGATE_REDIS_PASSWORD) and Lifecycle.WebhookSecret from
// --webhook-secret-file (the file wins over TUSGATE_WEBHOOK_SECRET), each
// without trailing line breaks; and the key pair of --tls-cert and
// --tls-key, which it only loads to see that it can (the server loads it
// again to serve). It returns a problem naming the flag for every file it
// cannot read, and leaves the setting that file was for as it was. Load
// calls it, then Validate.
func (c *Config) Resolve() Problems {
	var p Problems
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if c.RedisURL != "" && c.RedisPasswordFile != "" {
		if s, err := readSecret(c.RedisPasswordFile); err != nil {
			add("--redis-password-file: %v", err)
		} else {
			c.RedisPassword = s
		}
	}
	if c.Lifecycle.WebhookSecretFile != "" {
		if s, err := readSecret(c.Lifecycle.WebhookSecretFile); err != nil {
			add("--webhook-secret-file: %v", err)
		} else {
			c.Lifecycle.WebhookSecret = s
		}
	}
	if c.TLSCert != "" && c.TLSKey != "" {
		if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
			add("--tls-cert/--tls-key: cannot load the key pair: %v", err)
		}
	}
	return p
}

// readSecret returns the contents of the file name without trailing line
// breaks.
func readSecret(name string) (string, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
