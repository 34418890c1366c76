# shoal: the README's commands.
#
#   make up     build lvsd, lvsctl and the demo helper, build the image, start
#               the three-director docker-compose cluster, apply the demo
#               config and show where the VIP is and a few requests through it
#   make test   every test (the compose e2e runs when docker is there)
#   make console-token ROLE=viewer|operator|admin
#               a login token for the web console, whose URLs make up prints
#   make down   stop the cluster, delete its volumes and the bootstrap token
#   make deb    the Debian package, dist/shoal_<version>_<arch>.deb
#
# Knobs (environment or make VAR=value):
#   SHOAL_DATAPLANE    ipvs when the host has the ip_vs module loaded, else vip
#   SHOAL_PUBLIC_NET   first three octets of the VIP network (10.213.77)
#   SHOAL_CLUSTER_NET  first three octets of the Raft network (10.213.78)
#   SHOAL_PROFILE      lvsd's Raft timing profile: lan (default), fast, wan
#   SHOAL_TOKEN_FILE   the directors' bootstrap token (deploy/.shoal-token)
#   COMPOSE            docker-compose (default) or "docker compose"
#   VERSION            the release stamped into lvsd and lvsctl (git describe)

SHELL := /bin/bash
GO ?= go
COMPOSE ?= docker-compose
PROJECT ?= shoal

SHOAL_IMAGE ?= shoal:dev
# /proc/net/ip_vs exists once the host kernel has IPVS loaded; a container
# cannot load the module itself.
SHOAL_DATAPLANE ?= $(shell test -e /proc/net/ip_vs && echo ipvs || echo vip)
SHOAL_PUBLIC_NET ?= 10.213.77
SHOAL_CLUSTER_NET ?= 10.213.78
SHOAL_PROFILE ?= lan
SHOAL_TOKEN_FILE ?= $(CURDIR)/deploy/.shoal-token
# The cluster CA's certificate, copied out by make console for the browser.
SHOAL_CA_FILE ?= $(CURDIR)/deploy/.shoal-ca.crt
export SHOAL_IMAGE SHOAL_DATAPLANE SHOAL_PUBLIC_NET SHOAL_CLUSTER_NET SHOAL_PROFILE SHOAL_TOKEN_FILE

DC := $(COMPOSE) -p $(PROJECT) -f deploy/docker-compose.yml
VIP := $(SHOAL_PUBLIC_NET).100
# LVSCTL is the client's lvsctl, with its operator certificate; ADMIN is
# lvsctl on director1 with root's admin credentials from its data volume
# (lvsctl's default), for what needs the admin role.
LVSCTL := $(DC) exec -T client /lvsctl
ADMIN := $(DC) exec -T director1 /lvsctl -s $(SHOAL_PUBLIC_NET).11:7070
# FIND_HOLDER sets the shell variable holder to the director that reports
# holding the VIP, waiting up to 20s for one (an election may be under way).
FIND_HOLDER = for i in $$(seq 40); do \
	  holder=$$($(LVSCTL) -o json cluster status 2>/dev/null | sed -n 's/.*"vip_holder": *"\([^"]*\)".*/\1/p'); \
	  test -n "$$holder" && break; sleep 0.5; \
	done

.PHONY: all build bin image up demo console console-token status failover logs down test fuzz deb clean

all: build

build:
	$(GO) build ./...

# The build's stamp (package buildinfo): lvsd --version, lvsctl version,
# NodeStatus and shoal_build_info show it. DATE honours SOURCE_DATE_EPOCH.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
DATE ?= $(shell date -u -d @$${SOURCE_DATE_EPOCH:-$$(date +%s)} +%Y-%m-%dT%H:%M:%SZ)
BUILDINFO := github.com/shoal-lb/shoal/buildinfo
LDFLAGS := -s -w -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).commit=$(COMMIT) -X $(BUILDINFO).date=$(DATE)

# Static binaries for the FROM-scratch image.
bin:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='$(LDFLAGS)' -o deploy/bin/ ./cmd/lvsd ./cmd/lvsctl ./deploy/shoal-demo

# The Debian package, built with nfpm by deploy/deb (which builds lvsd and
# lvsctl with the same stamp, and writes their man pages and completions).
deb:
	$(GO) run ./deploy/deb -version '$(VERSION)' -commit '$(COMMIT)' -date '$(DATE)' -out dist

image: bin
	docker build -q -t $(SHOAL_IMAGE) -f deploy/Dockerfile deploy

# The secret the three directors share at their first bootstrap, made once:
# director1 makes the cluster CA and lets the others in with it.
$(SHOAL_TOKEN_FILE): | bin
	@echo "== bootstrap token for the directors: $@"
	@umask 077; deploy/bin/lvsctl cluster token --bootstrap > $@.tmp && mv $@.tmp $@

up: image $(SHOAL_TOKEN_FILE)
	@test -f $(SHOAL_TOKEN_FILE) || { echo "$(SHOAL_TOKEN_FILE) is not a file (a docker-compose up without it leaves a directory): remove it"; exit 1; }
	@echo "== starting 3 directors, 2 real servers and a client (dataplane $(SHOAL_DATAPLANE), mutual TLS)"
	$(DC) up -d
	@$(MAKE) --no-print-directory demo

# demo waits for a leader, gives the client an operator certificate,
# applies deploy/demo.yaml as admin and shows the result from the client.
demo:
	@echo "== waiting for a leader"
	@for i in $$(seq 60); do \
	  $(ADMIN) -o json cluster status 2>/dev/null | grep -q '"leader_id"' && break; sleep 1; \
	done
	@$(LVSCTL) whoami >/dev/null 2>&1 || { \
	  echo "== issuing the client an operator certificate (lvsctl certs issue on director1, into the client-tls volume)"; \
	  $(ADMIN) certs issue --role operator --name client --out /client-tls >/dev/null; \
	}
	@echo "== lvsctl whoami in the client container"; $(LVSCTL) whoami
	@echo "== applying deploy/demo.yaml through lvsctl on director1 (config changes need the admin role)"
	@sed 's/$${SHOAL_PUBLIC_NET}/$(SHOAL_PUBLIC_NET)/g' deploy/demo.yaml | $(ADMIN) config apply -f -
	@$(FIND_HOLDER); \
	$(LVSCTL) cluster status; echo "== the VIP $(VIP) is on $${holder:-no director yet}"
	@echo "== 6 requests to http://$(VIP)/ from the client container"
	@for i in $$(seq 20); do \
	  $(DC) exec -T client /shoal-demo get -timeout 1s -url http://$(VIP)/ >/dev/null 2>&1 && break; sleep 0.5; \
	done
	@$(DC) exec -T client /shoal-demo get -n 6 -timeout 1s -url http://$(VIP)/
	@$(MAKE) --no-print-directory console
	@echo
	@echo "Try a failover: make failover   (kills the VIP holder, asks again)"
	@echo "Clean up:       make down"

# console prints the web console's URLs (each director serves it on :8443,
# published on a loopback port docker picks) and how to log in.
console:
	@echo "== web console (lvsd --web-addr; any director shows the whole cluster):"
	@for d in director1 director2 director3; do \
	  hp=$$($(DC) port $$d 8443 2>/dev/null); test -n "$$hp" && echo "   $$d: https://$${hp/127.0.0.1/localhost}/"; \
	done; true
	@docker cp $$($(DC) ps -q director1):/var/lib/shoal/tls/ca.crt $(SHOAL_CA_FILE) 2>/dev/null && \
	  echo "   The directors' certificates are of the cluster's own CA, $(SHOAL_CA_FILE): trust it in the browser, or accept its warning." || \
	  echo "   The directors' certificates are of the cluster's own CA: accept the browser's warning (docs/console.md)."
	@echo "   Log in with a short-lived token (paste it into the login page):"
	@echo "     make console-token ROLE=viewer|operator|admin     (lvsctl console token on director1, 1h)"

# console-token issues a web console login token (admin, on director1).
ROLE ?= operator
console-token:
	@$(ADMIN) console token --role $(ROLE) --name console-$(ROLE)

# status asks the directors in turn: the client's default one may be down.
status:
	@for d in 11 12 13; do \
	  $(LVSCTL) -s $(SHOAL_PUBLIC_NET).$$d:7070 --request-timeout 3s cluster status 2>/dev/null && exit 0; \
	done; echo "no director answered"; exit 1

# failover kills the director that holds the VIP and asks the VIP again.
failover:
	@$(FIND_HOLDER); \
	test -n "$$holder" || { echo "no VIP holder reported"; exit 1; }; \
	echo "== docker kill $$holder"; $(DC) kill $$holder 2>/dev/null; \
	for i in $$(seq 40); do \
	  out=$$($(DC) exec -T client /shoal-demo get -timeout 500ms -url http://$(VIP)/ 2>/dev/null); \
	  case "$$out" in *"-> director"*) case "$$out" in *"-> $$holder"*) ;; *) break;; esac;; esac; sleep 0.25; \
	done; \
	$(LVSCTL) -s $(SHOAL_PUBLIC_NET).1$$(( $${holder#director} % 3 + 1 )):7070 cluster status; \
	$(DC) exec -T client /shoal-demo get -n 4 -timeout 1s -url http://$(VIP)/; \
	echo "Bring $$holder back: $(DC) start $$holder"

logs:
	$(DC) logs --tail=100

down:
	$(DC) down -v --remove-orphans
	rm -f $(SHOAL_TOKEN_FILE) $(SHOAL_CA_FILE)

# The README's test command. The docker-compose e2e (e2e/compose_test.go)
# builds its own image and compose project and skips without docker. Tests
# append the figures they measure (failover times) to SHOAL_E2E_FIGURES,
# printed at the end: go test hides a passing test's log without -v.
# -p 1: the labs (QEMU, compose, namespaces) time failovers and must not
# compete with each other for the CPU; the unit packages take seconds.
SHOAL_E2E_FIGURES ?= /tmp/shoal-e2e-figures.txt
export SHOAL_E2E_FIGURES
# third_party/raft is a module of its own, which ./... leaves out: its
# tests are those of shoal's patch (shoal_test.go).
test:
	@rm -f $(SHOAL_E2E_FIGURES)
	@$(GO) test -p 1 -count=1 -timeout 30m ./... && (cd third_party/raft && $(GO) test -count=1 -timeout 5m .); rc=$$?; \
	if [ -s $(SHOAL_E2E_FIGURES) ]; then echo "== measured"; cat $(SHOAL_E2E_FIGURES); fi; exit $$rc

# Bounded fuzzing of every Fuzz target in the tree.
FUZZTIME ?= 15s
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' . | grep -v '^./deploy/bin'); do \
	  pkg=./$$(dirname $${f#./}); \
	  for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
	    echo "== $$pkg $$t"; $(GO) test -run='^$$' -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) $$pkg; \
	  done; \
	done

clean:
	rm -rf deploy/bin dist
