package grpcsec

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// keyPair is a certificate and key read from files and read again when
// either file changes, so a rotated certificate (cert-manager renews well
// before expiry) is served without a restart. A pair that fails to load
// after a change keeps the last good one: a half-written rotation must not
// take the service down.
type keyPair struct {
	certFile, keyFile string
	logger            *slog.Logger

	mu       sync.Mutex
	modified [2]time.Time
	checked  time.Time
	current  *tls.Certificate
}

// recheckEvery bounds how often a handshake looks at the files' times.
const recheckEvery = 10 * time.Second

func newKeyPair(certFile, keyFile string, logger *slog.Logger) (*keyPair, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	k := &keyPair{certFile: certFile, keyFile: keyFile, logger: logger}
	if err := k.load(); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *keyPair) get() (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if time.Since(k.checked) >= recheckEvery {
		k.checked = time.Now()
		if mod, err := k.modTimes(); err == nil && mod != k.modified {
			if err := k.load(); err != nil {
				// Keep serving the last good pair; the next change of the
				// files is tried again.
				k.modified = mod
				k.logger.Warn("a changed TLS certificate did not load; serving the previous one", "error", err)
			}
		}
	}
	return k.current, nil
}

func (k *keyPair) load() error {
	mod, err := k.modTimes()
	if err != nil {
		return err
	}
	pair, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return fmt.Errorf("loading -tls-cert %s and -tls-key %s: %w", k.certFile, k.keyFile, err)
	}
	k.current, k.modified, k.checked = &pair, mod, time.Now()
	return nil
}

func (k *keyPair) modTimes() ([2]time.Time, error) {
	var mod [2]time.Time
	for i, f := range []string{k.certFile, k.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			return mod, fmt.Errorf("reading %s: %w", f, err)
		}
		mod[i] = st.ModTime()
	}
	return mod, nil
}
