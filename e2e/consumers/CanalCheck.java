// CanalCheck feeds Ferry's Canal JSON messages to Flink's own canal-json
// deserializer (flink-json's CanalJsonDeserializationSchema) and prints one
// JSON verdict line per message: the RowKinds and field values Flink
// produced, or the exception it threw. The e2e tests (e2e/consumers_test.go)
// run it once per Flink version, with every message in one file, so that a
// JVM starts once per version.
//
// It is launched as a single source file (java -cp <flink jars>
// CanalCheck.java IN), so the same source serves every Flink version it is
// run against; only its classpath changes.
//
// Input: one message a line, three tab-separated fields: an id the caller
// chooses, the table's Flink row type (ROW<`col` TYPE, ...>, parsed by
// Flink's LogicalTypeParser), and the Kafka record value in base64.
// Output: {"id":..,"ok":true,"rows":[{"kind":"INSERT","fields":[..]}]} or
// {"id":..,"ok":false,"error":".."} per input line, in input order.

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
import java.util.Base64;
import java.util.Collections;
import java.util.List;

import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.formats.common.TimestampFormat;
import org.apache.flink.formats.json.canal.CanalJsonDeserializationSchema;
import org.apache.flink.table.data.DecimalData;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.data.TimestampData;
import org.apache.flink.table.types.logical.LogicalType;
import org.apache.flink.table.types.logical.RowType;
import org.apache.flink.table.types.logical.utils.LogicalTypeParser;
import org.apache.flink.table.types.utils.TypeConversions;
import org.apache.flink.util.Collector;

public class CanalCheck {
    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: CanalCheck INPUT");
            System.exit(2);
        }
        PrintStream out = new PrintStream(System.out, false, "UTF-8");
        try (BufferedReader in = Files.newBufferedReader(Paths.get(args[0]), StandardCharsets.UTF_8)) {
            String line;
            while ((line = in.readLine()) != null) {
                if (line.isEmpty()) {
                    continue;
                }
                String[] f = line.split("\t", 3);
                if (f.length != 3) {
                    throw new IllegalArgumentException("input line without three tab-separated fields");
                }
                out.println(verdict(f[0], f[1], Base64.getDecoder().decode(f[2])));
            }
        }
        out.flush();
    }

    // verdict runs one message through a fresh deserializer, strict: parse
    // errors are thrown, never turned into silent drops or NULLs.
    static String verdict(String id, String rowType, byte[] value) {
        StringBuilder sb = new StringBuilder("{\"id\":").append(quote(id));
        try {
            RowType type = (RowType) LogicalTypeParser.parse(rowType, CanalCheck.class.getClassLoader());
            CanalJsonDeserializationSchema schema = CanalJsonDeserializationSchema
                    .builder(TypeConversions.fromLogicalToDataType(type), Collections.emptyList(),
                            TypeInformation.of(RowData.class))
                    .setIgnoreParseErrors(false)
                    .setTimestampFormat(TimestampFormat.SQL)
                    .build();
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

    // initContext answers the format's open(): canal-json asks for nothing
    // that a job would give it, so every method returns null.
    static DeserializationSchema.InitializationContext initContext() {
        return (DeserializationSchema.InitializationContext) Proxy.newProxyInstance(
                CanalCheck.class.getClassLoader(),
                new Class<?>[] {DeserializationSchema.InitializationContext.class},
                (proxy, method, a) -> null);
    }

    static void row(StringBuilder sb, RowType type, RowData r) {
        sb.append("{\"kind\":").append(quote(r.getRowKind().name())).append(",\"fields\":[");
        for (int i = 0; i < type.getFieldCount(); i++) {
            if (i > 0) sb.append(',');
            LogicalType ft = type.getTypeAt(i);
            Object v = RowData.createFieldGetter(ft, i).getFieldOrNull(r);
            String s = render(ft, v);
            sb.append(s == null ? "null" : quote(s));
        }
        sb.append("]}");
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
