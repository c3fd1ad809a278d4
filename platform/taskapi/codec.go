package taskapi

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"
)

// Payload encryption: a task's spec, state, checkpoints and errors travel
// through Temporal and stay in its histories. They hold no passwords
// (secrets are references) and no row values, yet they name hosts, users,
// tables and filters; with a key, every payload the worker and the control
// API write is sealed with AES-256-GCM before it leaves the process, so the
// Temporal server and its database hold ciphertext only. The Temporal UI
// and CLI read them through the codec server the control API serves.
const (
	// encryptedEncoding marks a sealed payload; anything else passes
	// through Decode, so `temporal workflow signal --input '{...}'` without
	// the codec still reaches the workflow in clear.
	encryptedEncoding = "binary/encrypted"
	metadataEncoding  = "encoding"
	metadataKeyID     = "encryption-key-id"
)

// EncryptionCodec seals payloads with one key and opens those sealed with
// it; the key's ID (a hash prefix, never the key) names it in each payload,
// so a payload sealed with another key fails with a clear error.
type EncryptionCodec struct {
	aead  cipher.AEAD
	keyID string
}

// LoadEncryptionCodec reads a key file: 32 bytes, raw or as 64 hex digits
// (`openssl rand -hex 32 > key`).
func LoadEncryptionCodec(path string) (*EncryptionCodec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the payload key %s: %w", path, err)
	}
	key := b
	if s := strings.TrimSpace(string(b)); len(s) == 64 {
		if key, err = hex.DecodeString(s); err != nil {
			return nil, fmt.Errorf("payload key %s: 64 characters but not hex: %w", path, err)
		}
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("payload key %s holds %d bytes; it must be 32 bytes (AES-256), raw or as 64 hex digits: create one with openssl rand -hex 32", path, len(key))
	}
	return NewEncryptionCodec(key)
}

// NewEncryptionCodec builds the codec for a 32-byte key.
func NewEncryptionCodec(key []byte) (*EncryptionCodec, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("payload key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("payload key: %w", err)
	}
	sum := sha256.Sum256(key)
	return &EncryptionCodec{aead: aead, keyID: hex.EncodeToString(sum[:8])}, nil
}

// Encode seals each payload whole, metadata included, so the encoding and
// message type are hidden too.
func (c *EncryptionCodec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plain, err := proto.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("encoding a payload for encryption: %w", err)
		}
		nonce := make([]byte, c.aead.NonceSize(), c.aead.NonceSize()+len(plain)+c.aead.Overhead())
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("drawing a nonce: %w", err)
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{metadataEncoding: []byte(encryptedEncoding), metadataKeyID: []byte(c.keyID)},
			Data:     c.aead.Seal(nonce, nonce, plain, []byte(c.keyID)),
		}
	}
	return out, nil
}

// ErrWrongKey is a payload sealed with a key other than this codec's.
var ErrWrongKey = errors.New("payload sealed with another key")

// Decode opens sealed payloads and passes the others through.
func (c *EncryptionCodec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if string(p.GetMetadata()[metadataEncoding]) != encryptedEncoding {
			out[i] = p
			continue
		}
		if id := string(p.GetMetadata()[metadataKeyID]); id != c.keyID {
			return nil, fmt.Errorf("%w: key ID %s, this process has %s; give it the key the payload was written with", ErrWrongKey, id, c.keyID)
		}
		data := p.GetData()
		n := c.aead.NonceSize()
		if len(data) < n {
			return nil, errors.New("an encrypted payload shorter than its nonce")
		}
		plain, err := c.aead.Open(nil, data[:n], data[n:], []byte(c.keyID))
		if err != nil {
			return nil, fmt.Errorf("opening an encrypted payload (key ID %s): %w", c.keyID, err)
		}
		var q commonpb.Payload
		if err := proto.Unmarshal(plain, &q); err != nil {
			return nil, fmt.Errorf("decoding a decrypted payload: %w", err)
		}
		out[i] = &q
	}
	return out, nil
}

// DataConverterWith is DataConverter with the codec applied to every
// payload; a nil codec gives DataConverter itself.
func DataConverterWith(codec converter.PayloadCodec) converter.DataConverter {
	if codec == nil {
		return DataConverter()
	}
	return converter.NewCodecDataConverter(DataConverter(), codec)
}

// PayloadCodec loads the codec a process's -payload-key-file names; an
// empty path is no codec (a nil interface), and payloads stay in clear.
func PayloadCodec(keyFile string) (converter.PayloadCodec, error) {
	if keyFile == "" {
		return nil, nil
	}
	c, err := LoadEncryptionCodec(keyFile)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// CodecHandler serves codec over Temporal's remote codec protocol
// (POST /encode and /decode), for the Temporal UI (`--ui-codec-endpoint`)
// and CLI (`--codec-endpoint`). Browsers may call it only from origins:
// anyone who reaches it can open payloads, so bind it where only operators
// can.
func CodecHandler(codec converter.PayloadCodec, origins []string) http.Handler {
	h := converter.NewPayloadCodecHTTPHandler(codec)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" && slices.Contains(origins, o) {
			w.Header().Set("Access-Control-Allow-Origin", o)
			w.Header().Set("Access-Control-Allow-Credentials", "true")
			w.Header().Set("Access-Control-Allow-Headers", "Content-Type,X-Namespace,Authorization")
			w.Header().Set("Access-Control-Allow-Methods", "POST,OPTIONS")
			w.Header().Add("Vary", "Origin")
		}
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// FailureConverterWith seals failure messages and stack traces too (they
// name tables and LSNs) when there is a codec; nil (Temporal's default)
// otherwise.
func FailureConverterWith(codec converter.PayloadCodec) converter.FailureConverter {
	if codec == nil {
		return nil
	}
	return temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{
		DataConverter: DataConverterWith(codec), EncodeCommonAttributes: true,
	})
}
