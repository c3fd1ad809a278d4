package task

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
func DataConverter() converter.DataConverter {
	return converter.NewCompositeDataConverter(
		converter.NewNilPayloadConverter(),
		converter.NewByteSlicePayloadConverter(),
		converter.NewProtoJSONPayloadConverter(),
		converter.NewProtoPayloadConverter(),
		plainJSONConverter{converter.NewJSONPayloadConverter()},
	)
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
