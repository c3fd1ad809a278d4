package taskapi

import (
	"fmt"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// DataConverter is Temporal's default converter, except that plain JSON
// decodes into a protobuf message with protojson. `temporal workflow signal
// --input` sends plain JSON, and with encoding/json an enum would have to be
// a number and a misspelt field would vanish; with protojson users write
// "COMPRESSION_ZSTD" and get an error for a field that does not exist.
//
// Messages of largeProtoBytes or more are written in binary protobuf
// instead: a task over 10,000 tables carries a progress entry per table in
// its checkpoint and a table per entry in its state, about a megabyte as
// protojson (Temporal warns from 512 KB and refuses 2 MB) and 30 ms to
// encode, each heartbeat. Binary is 2.5 times smaller and several times
// faster; small payloads stay readable in the Temporal UI and CLI. Every
// payload names its encoding, so either decodes, whichever wrote it.
func DataConverter() converter.DataConverter {
	return converter.NewCompositeDataConverter(
		converter.NewNilPayloadConverter(),
		converter.NewByteSlicePayloadConverter(),
		largeProtoConverter{converter.NewProtoPayloadConverter()},
		converter.NewProtoJSONPayloadConverter(),
		plainJSONConverter{converter.NewJSONPayloadConverter()},
	)
}

// largeProtoBytes is the binary size from which a message is written as
// binary protobuf: its protojson would be about 250 KB.
const largeProtoBytes = 100 << 10

// largeProtoConverter writes large messages as binary protobuf and passes
// smaller ones on (a nil payload) to the protojson converter after it. It
// decodes every binary protobuf payload.
type largeProtoConverter struct {
	*converter.ProtoPayloadConverter
}

func (c largeProtoConverter) ToPayload(value any) (*commonpb.Payload, error) {
	m, ok := value.(proto.Message)
	if !ok || proto.Size(m) < largeProtoBytes {
		return nil, nil
	}
	return c.ProtoPayloadConverter.ToPayload(value)
}

// plainJSONConverter handles "json/plain" payloads.
type plainJSONConverter struct {
	*converter.JSONPayloadConverter
}

func (c plainJSONConverter) FromPayload(p *commonpb.Payload, valuePtr any) error {
	if m, ok := valuePtr.(proto.Message); ok {
		if err := protojson.Unmarshal(p.GetData(), m); err != nil {
			return fmt.Errorf("decoding %s from JSON: %w", m.ProtoReflect().Descriptor().FullName(), err)
		}
		return nil
	}
	return c.JSONPayloadConverter.FromPayload(p, valuePtr)
}
