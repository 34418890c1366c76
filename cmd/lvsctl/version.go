package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/shoal-lb/shoal/buildinfo"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

func init() { registerCommand(newVersionCmd) }

// versions is what `lvsctl version` reports: its own build and, when it
// reached one, the build of the node at --server.
type versions struct {
	client *shoalv1.BuildInfo
	// server is nil when the node was not asked, did not answer, or runs an
	// lvsd from before builds were reported (serverNode set).
	server     *shoalv1.BuildInfo
	serverNode string
}

func newVersionCmd(a *app) *cobra.Command {
	var clientOnly bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print lvsctl's version and the version of the node at --server",
		Long: `Print lvsctl's version and the version of the lvsd at --server, as kubectl
version does. lvsctl cluster status shows the version of every router.
Without a server to answer, lvsctl prints its own version and fails;
--client asks no server.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := &versions{client: buildInfoProto(buildinfo.Get())}
			var serverErr error
			if !clientOnly {
				serverErr = a.serverVersion(cmd, v)
			}
			if err := a.printVersions(v); err != nil {
				return err
			}
			return serverErr
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "print lvsctl's version only, without asking a server")
	return cmd
}

// serverVersion asks the node at --server for its status, which carries
// its build.
func (a *app) serverVersion(cmd *cobra.Command, v *versions) error {
	conn, err := a.dial()
	if err != nil {
		return err
	}
	ctx, cancel := a.context(cmd)
	defer cancel()
	resp, err := shoalv1.NewNodeServiceClient(conn).GetNodeStatus(ctx, &shoalv1.GetNodeStatusRequest{View: shoalv1.NodeStatusView_NODE_STATUS_VIEW_BASIC})
	if err != nil {
		return fmt.Errorf("server version: %w", err)
	}
	v.server, v.serverNode = resp.GetStatus().GetBuild(), resp.GetStatus().GetId()
	return nil
}

func (a *app) printVersions(v *versions) error {
	switch a.output {
	case "json", "yaml":
		j, err := v.json()
		if err != nil {
			return err
		}
		if a.output == "yaml" {
			y, err := yaml.JSONToYAML(j)
			if err != nil {
				return fmt.Errorf("encode YAML: %w", err)
			}
			_, err = a.stdout.Write(y)
			return err
		}
		_, err = fmt.Fprintln(a.stdout, string(j))
		return err
	}
	fmt.Fprintf(a.stdout, "Client: %s\n", buildInfoOf(v.client))
	switch {
	case v.server != nil:
		_, err := fmt.Fprintf(a.stdout, "Server: %s, node %s at %s\n", buildInfoOf(v.server), v.serverNode, a.server)
		return err
	case v.serverNode != "":
		_, err := fmt.Fprintf(a.stdout, "Server: unknown, node %s at %s runs an lvsd from before version reporting\n", v.serverNode, a.server)
		return err
	}
	return nil
}

// json is the -o json form: {"client": BuildInfo, "server": BuildInfo,
// "server_node": ID}, each BuildInfo in protojson as the API's other
// messages print.
func (v *versions) json() ([]byte, error) {
	out := map[string]any{}
	for k, b := range map[string]*shoalv1.BuildInfo{"client": v.client, "server": v.server} {
		if b == nil {
			continue
		}
		j, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("encode JSON: %w", err)
		}
		out[k] = json.RawMessage(j)
	}
	if v.serverNode != "" {
		out["server_node"] = v.serverNode
	}
	return json.MarshalIndent(out, "", "  ")
}

// buildInfoProto is b as the API carries it.
func buildInfoProto(b buildinfo.Info) *shoalv1.BuildInfo {
	return &shoalv1.BuildInfo{
		Version: b.Version, Commit: b.Commit, Modified: b.Modified,
		BuildDate: b.Date, GoVersion: b.GoVersion, Platform: b.Platform,
	}
}

// buildInfoOf is the API's BuildInfo as buildinfo prints it.
func buildInfoOf(b *shoalv1.BuildInfo) buildinfo.Info {
	return buildinfo.Info{
		Version: b.GetVersion(), Commit: b.GetCommit(), Modified: b.GetModified(),
		Date: b.GetBuildDate(), GoVersion: b.GetGoVersion(), Platform: b.GetPlatform(),
	}
}

// memberVersion is a member's version for the cluster status table: the
// release, a devel build with its commit, "unknown" for a router that
// answered without one (an lvsd older than version reporting), "-" for
// one that did not answer.
func memberVersion(m *shoalv1.Member) string {
	b := m.GetBuild()
	switch {
	case b == nil && m.GetRole() == "unreachable":
		return "-"
	case b.GetVersion() == "":
		return "unknown"
	case b.GetVersion() == buildinfo.Devel && b.GetCommit() != "":
		return buildinfo.Devel + "+" + buildInfoOf(b).ShortCommit()
	}
	return b.GetVersion()
}

// mixedVersions says which routers run which version when they do not
// all run the same one (a rolling upgrade under way, or left half done);
// "" when they do.
func mixedVersions(members []*shoalv1.Member) string {
	ids := map[string][]string{}
	var order []string
	for _, m := range members {
		v := memberVersion(m)
		if v == "-" {
			continue
		}
		if _, ok := ids[v]; !ok {
			order = append(order, v)
		}
		ids[v] = append(ids[v], m.GetId())
	}
	if len(order) < 2 {
		return ""
	}
	slices.Sort(order)
	parts := make([]string, len(order))
	for i, v := range order {
		parts[i] = fmt.Sprintf("%s (%s)", v, strings.Join(ids[v], ", "))
	}
	return strings.Join(parts, ", ")
}

// printMixedVersions writes the line that warns of mixed versions, if any.
func printMixedVersions(w io.Writer, members []*shoalv1.Member) {
	if mixed := mixedVersions(members); mixed != "" {
		fmt.Fprintf(w, "mixed versions: %s; see docs/operations.md on upgrades\n\n", mixed)
	}
}
