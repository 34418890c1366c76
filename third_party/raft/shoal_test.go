package raft

import (
	"testing"
	"time"
)

// TestSplitVoteCampaignsAgain (shoal's patch, PATCH.md): the leader is cut
// off, and its two followers campaign one after the other without
// pre-votes, so that the first one's request reaches the second while it
// still has a leader (refused) and the second one's reaches the first
// after it voted for itself (refused: a split). Stock raft then waits out
// an election timeout, 2 to 4 s here. With the patch the first candidate
// campaigns again at once if it is the better of the two (the lower ID,
// with equal logs), or after an eighth of its timeout if not, since the
// second one saw no split.
func TestSplitVoteCampaignsAgain(t *testing.T) {
	for _, firstWins := range []bool{true, false} {
		name := map[bool]string{true: "the first candidate is the better", false: "the second candidate is the better"}[firstWins]
		t.Run(name, func(t *testing.T) {
			conf := inmemConfig(t)
			conf.PreVoteDisabled = true
			c := MakeCluster(3, t, conf)
			defer c.Close()
			leader := c.Leader()
			// Long timeouts from here on, so that only the campaigns below elect.
			const et = 2 * time.Second
			for _, r := range c.rafts {
				rc := r.ReloadableConfig()
				rc.HeartbeatTimeout, rc.ElectionTimeout = et, et
				if err := r.ReloadConfig(rc); err != nil {
					t.Fatal(err)
				}
			}
			var fs []*Raft
			for _, r := range c.rafts {
				if r != leader {
					fs = append(fs, r)
				}
			}
			// fs[0] campaigns first; it is the better candidate when its ID is lower.
			if (fs[0].localID < fs[1].localID) != firstWins {
				fs[0], fs[1] = fs[1], fs[0]
			}
			c.Partition([]ServerAddress{leader.localAddr})

			fs[0].ElectNow()
			waitFor(t, func() bool { return fs[0].getState() == Candidate })
			time.Sleep(50 * time.Millisecond) // its request refused by fs[1], which still has a leader
			start := time.Now()
			fs[1].ElectNow()
			waitFor(t, func() bool { return fs[0].getState() == Leader || fs[1].getState() == Leader })
			took := time.Since(start)
			t.Logf("a leader %v after the second campaign", took.Round(time.Millisecond))
			if want := et / 2; took > want {
				t.Errorf("a leader after %v, want within %v (an election timeout is %v)", took, want, et)
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}
