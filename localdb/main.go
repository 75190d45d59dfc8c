// Command ferretdb-local runs FerretDB v1 (SQLite backend) embedded, on loopback only.
//
// Embedding github.com/FerretDB/FerretDB/ferretdb avoids the panic of a plain
// `go install .../cmd/ferretdb` (missing generated version file, FerretDB#2982).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	dataDir := flag.String("data-dir", "./.localdb/data", "directory for the SQLite database files")
	addr := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on (port 0 picks a free port)")
	uriFile := flag.String("uri-file", "", "if set, the MongoDB URI is written there once the server listens")
	flag.Parse()

	abs, err := filepath.Abs(*dataDir)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		log.Fatal(err)
	}

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *addr},
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
	})
	if err != nil {
		log.Fatal(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()

	uri := f.MongoDBURI()
	fmt.Println(uri)
	if *uriFile != "" {
		tmp := *uriFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(uri+"\n"), 0o600); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(tmp, *uriFile); err != nil {
			log.Fatal(err)
		}
	}

	if err := <-done; err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
}
