package delivery

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferry-cdc/ferry/services/testenv"
)

// javaProgram prints, for each input line (UTF-8), the line's hashCode and
// Math.abs(hashCode) % n for the partition counts used below.
const javaProgram = `
import java.io.*;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
public class Hash {
  public static void main(String[] a) throws Exception {
    int[] ns = {1, 2, 3, 7, 12, 16, 100};
    for (String s : Files.readAllLines(Paths.get(a[0]), StandardCharsets.UTF_8)) {
      s = s.replace("\\n", "\n");
      StringBuilder b = new StringBuilder();
      b.append(s.hashCode());
      for (int n : ns) b.append(' ').append(Math.abs(s.hashCode()) % n);
      System.out.println(b);
    }
  }
}
`

var partitionCounts = []int32{1, 2, 3, 7, 12, 16, 100}

func TestJavaHashCodeMatchesJava(t *testing.T) {
	// The vectors come from a real JVM, which the -short tier goes without.
	testenv.Integration(t)
	java, err := exec.LookPath("java")
	if err != nil {
		t.Fatalf("java (17+) is required for the hashCode vectors: %v", err)
	}
	inputs := []string{
		"", "a", "public.orders", "sales.Orders", "1", "42", "-7", "1a2b", "héllo wörld", "日本語テキスト",
		"🚀", "emoji 🚀 and 𝄞 clef", "\U0010FFFF", "polygenelubricants", "GydZG_", "DESIGNING WORKHOUSES",
		"a long primary key value that overflows int32 many times over and over",
		"2024-01-01 00:00:00+00", "public.t\\nnewline",
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "Hash.java")
	in := filepath.Join(dir, "in.txt")
	if err := os.WriteFile(src, []byte(javaProgram), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in, []byte(strings.Join(inputs, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, java, src, in).Output()
	if err != nil {
		t.Fatalf("running java: %v", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	i := 0
	for ; sc.Scan(); i++ {
		s := strings.ReplaceAll(inputs[i], `\n`, "\n")
		f := strings.Fields(sc.Text())
		wantHash, _ := strconv.ParseInt(f[0], 10, 32)
		if got := JavaHashCode(s); int64(got) != wantHash {
			t.Errorf("JavaHashCode(%q) = %d, Java %d", s, got, wantHash)
		}
		for j, n := range partitionCounts {
			want, _ := strconv.ParseInt(f[j+1], 10, 32)
			got := JavaPartition(s, n)
			if want < 0 {
				// Only Integer.MIN_VALUE: Java gives -(2^31 mod n); Ferry
				// its absolute value.
				if wantHash != -1<<31 || int64(got) != -want {
					t.Errorf("JavaPartition(%q, %d) = %d, Java %d", s, n, got, want)
				}
				continue
			}
			if int64(got) != want {
				t.Errorf("JavaPartition(%q, %d) = %d, Java %d", s, n, got, want)
			}
		}
	}
	if i != len(inputs) {
		t.Fatalf("java printed %d lines for %d inputs", i, len(inputs))
	}
	if JavaHashCode("polygenelubricants") != -1<<31 {
		t.Fatal("the MIN_VALUE vector is not exercised")
	}
	if got := JavaPartition("polygenelubricants", 3); got != 2 {
		t.Fatalf("MIN_VALUE partition of 3 = %d, want 2", got)
	}
}
