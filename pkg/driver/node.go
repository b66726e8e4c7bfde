package driver

// NodeConfig configures the Node service. (Placeholder until the node service lands.)
type NodeConfig struct{}

type nodeService struct{}

func newNodeService(nodeID string, cfg NodeConfig) (*nodeService, error) { return &nodeService{}, nil }
