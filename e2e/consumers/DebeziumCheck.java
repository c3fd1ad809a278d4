// DebeziumCheck feeds Ferry's Debezium JSON messages to Flink's own
// debezium-json deserializer (flink-json's DebeziumJsonDeserializationSchema)
// and prints one JSON verdict line per message: the RowKinds, field values
// and source metadata Flink produced, or the exception it threw. The e2e
// tests (e2e/consumers_debezium_test.go) run it once per Flink version,
// with every message in one file, so that a JVM starts once per version.
//
// It is launched as a single source file (java -cp <flink jars>
// DebeziumCheck.java IN), so the same source serves every Flink version.
//
// Input: one message a line, four tab-separated fields: an id the caller
// chooses, the table's Flink row type (ROW<`col` TYPE, ...>), the format's
// options ("schema-include" or "plain", then "," and the timestamp format,
// SQL or ISO-8601) and the Kafka record value in base64 (empty for a
// tombstone, which Flink skips).
// Output: {"id":..,"ok":true,"rows":[{"kind":"INSERT","fields":[..],
// "meta":[db, schema, table, source ts]}]} or {"id":..,"ok":false,
// "error":".."} per input line, in input order.

import java.io.BufferedReader;
import java.io.PrintStream;
import java.lang.reflect.Proxy;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.time.LocalDate;
import java.time.LocalTime;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.List;

import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.formats.json.debezium.DebeziumJsonFormatFactory;
import org.apache.flink.table.connector.format.DecodingFormat;
import org.apache.flink.table.connector.source.DynamicTableSource;
import org.apache.flink.table.data.DecimalData;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.data.TimestampData;
import org.apache.flink.table.types.logical.LogicalType;
import org.apache.flink.table.types.logical.RowType;
import org.apache.flink.table.types.logical.utils.LogicalTypeParser;
import org.apache.flink.table.types.utils.TypeConversions;
import org.apache.flink.util.Collector;

public class DebeziumCheck {
    // The source metadata read with every row, as a Flink table declares
    // it with METADATA FROM 'value.source.database' and so on.
    static final List<String> META = Arrays.asList(
            "source.database", "source.schema", "source.table", "source.timestamp");

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: DebeziumCheck INPUT");
            System.exit(2);
        }
        PrintStream out = new PrintStream(System.out, false, "UTF-8");
        try (BufferedReader in = Files.newBufferedReader(Paths.get(args[0]), StandardCharsets.UTF_8)) {
            String line;
            while ((line = in.readLine()) != null) {
                if (line.isEmpty()) {
                    continue;
                }
                String[] f = line.split("\t", 4);
                if (f.length != 4) {
                    throw new IllegalArgumentException("input line without four tab-separated fields");
                }
                out.println(verdict(f[0], f[1], f[2], Base64.getDecoder().decode(f[3])));
            }
        }
        out.flush();
    }

    // verdict runs one message through a fresh deserializer, strict: parse
    // errors are thrown, never turned into silent drops or NULLs.
    static String verdict(String id, String rowType, String options, byte[] value) {
        StringBuilder sb = new StringBuilder("{\"id\":").append(quote(id));
        try {
            String[] o = options.split(",");
            RowType type = (RowType) LogicalTypeParser.parse(rowType, DebeziumCheck.class.getClassLoader());
            DeserializationSchema<RowData> schema = decoder(type, o[0].equals("schema-include"), o[1]);
            schema.open(initContext());
            List<RowData> rows = new ArrayList<>();
            schema.deserialize(value, new Collector<RowData>() {
                public void collect(RowData r) { rows.add(r); }
                public void close() {}
            });
            sb.append(",\"ok\":true,\"rows\":[");
            for (int i = 0; i < rows.size(); i++) {
                if (i > 0) sb.append(',');
                row(sb, type, rows.get(i));
            }
            sb.append("]}");
        } catch (Throwable e) {
            sb.setLength(0);
            sb.append("{\"id\":").append(quote(id)).append(",\"ok\":false,\"error\":").append(quote(describe(e))).append('}');
        }
        return sb.toString();
    }

    // decoder builds the format as Flink SQL does for a table with
    // 'format' = 'debezium-json', its options and the metadata columns:
    // through the format factory.
    static DeserializationSchema<RowData> decoder(RowType type, boolean schemaInclude, String timestampFormat) {
        Configuration conf = new Configuration();
        conf.setString("schema-include", String.valueOf(schemaInclude));
        conf.setString("ignore-parse-errors", "false");
        conf.setString("timestamp-format.standard", timestampFormat);
        DecodingFormat<DeserializationSchema<RowData>> format =
                new DebeziumJsonFormatFactory().createDecodingFormat(null, conf);
        format.applyReadableMetadata(META);
        DynamicTableSource.Context ctx = (DynamicTableSource.Context) Proxy.newProxyInstance(
                DebeziumCheck.class.getClassLoader(),
                new Class<?>[] {DynamicTableSource.Context.class},
                (proxy, method, a) -> method.getName().equals("createTypeInformation") ? TypeInformation.of(RowData.class) : null);
        return format.createRuntimeDecoder(ctx, TypeConversions.fromLogicalToDataType(type));
    }

    // row prints the physical fields, then the metadata Flink appended.
    static void row(StringBuilder sb, RowType type, RowData r) {
        sb.append("{\"kind\":").append(quote(r.getRowKind().name())).append(",\"fields\":[");
        int n = type.getFieldCount();
        for (int i = 0; i < n; i++) {
            if (i > 0) sb.append(',');
            LogicalType ft = type.getTypeAt(i);
            String s = render(ft, RowData.createFieldGetter(ft, i).getFieldOrNull(r));
            sb.append(s == null ? "null" : quote(s));
        }
        sb.append("],\"meta\":[");
        for (int i = 0; i < META.size(); i++) {
            if (i > 0) sb.append(',');
            Object v = r.isNullAt(n + i) ? null
                    : (i < 3 ? r.getString(n + i).toString() : r.getTimestamp(n + i, 3).toInstant().toString());
            sb.append(v == null ? "null" : quote((String) v));
        }
        sb.append("]}");
    }

    // initContext answers the format's open(): debezium-json asks for
    // nothing that a job would give it, so every method returns null.
    static DeserializationSchema.InitializationContext initContext() {
        return (DeserializationSchema.InitializationContext) Proxy.newProxyInstance(
                DebeziumCheck.class.getClassLoader(),
                new Class<?>[] {DeserializationSchema.InitializationContext.class},
                (proxy, method, a) -> null);
    }

    // render prints a value the way the Go test compares it: decimals plain,
    // dates and times in ISO form, bytes in hex.
    static String render(LogicalType t, Object v) {
        if (v == null) return null;
        switch (t.getTypeRoot()) {
            case DATE:
                return LocalDate.ofEpochDay((Integer) v).toString();
            case TIME_WITHOUT_TIME_ZONE:
                return LocalTime.ofNanoOfDay(((Integer) v) * 1_000_000L).toString();
            case TIMESTAMP_WITH_LOCAL_TIME_ZONE:
                return ((TimestampData) v).toInstant().toString();
            case TIMESTAMP_WITHOUT_TIME_ZONE:
                return ((TimestampData) v).toLocalDateTime().toString();
            case DECIMAL:
                BigDecimal d = ((DecimalData) v).toBigDecimal();
                return d.toPlainString();
            case BINARY:
            case VARBINARY:
                StringBuilder h = new StringBuilder();
                for (byte b : (byte[]) v) h.append(String.format("%02x", b));
                return h.toString();
            default:
                return v.toString();
        }
    }

    // describe names the exception and its causes, as Flink's log would.
    static String describe(Throwable e) {
        StringBuilder sb = new StringBuilder();
        for (Throwable c = e; c != null; c = c.getCause()) {
            if (sb.length() > 0) sb.append("; caused by ");
            sb.append(c.getClass().getName()).append(": ").append(c.getMessage());
            if (c.getCause() == c) break;
        }
        return sb.toString();
    }

    static String quote(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': sb.append("\\\""); break;
                case '\\': sb.append("\\\\"); break;
                case '\n': sb.append("\\n"); break;
                case '\r': sb.append("\\r"); break;
                case '\t': sb.append("\\t"); break;
                default:
                    if (c < 0x20 || c == 0x2028 || c == 0x2029) sb.append(String.format("\\u%04x", (int) c));
                    else sb.append(c);
            }
        }
        return sb.append('"').toString();
    }
}
