package types

import (
	"strings"
	"time"
)

// Provisioning states, as ACI reports them.
const (
	ProvisioningPending   = "Pending"
	ProvisioningCreating  = "Creating"
	ProvisioningSucceeded = "Succeeded"
	ProvisioningFailed    = "Failed"
	ProvisioningDeleting  = "Deleting"
)

// Group instance-view states.
const (
	GroupPending   = "Pending"
	GroupRunning   = "Running"
	GroupSucceeded = "Succeeded"
	GroupFailed    = "Failed"
	GroupStopped   = "Stopped"
)

// Container states.
const (
	ContainerWaiting    = "Waiting"
	ContainerRunning    = "Running"
	ContainerTerminated = "Terminated"
)

// GroupStatus is what the agent observed for one group incarnation.
type GroupStatus struct {
	UID string `json:"uid"`
	// NodeName is the node whose agent wrote the status; empty when a
	// controller wrote it for a group without a node (waiting for a
	// place, or moved off a lost node).
	NodeName string `json:"nodeName,omitempty"`
	// TornDown is the agent's report that nothing of a deleted group is
	// left on its node: the lifecycle controller then removes the group.
	TornDown           bool  `json:"tornDown,omitempty"`
	ObservedGeneration int64 `json:"observedGeneration"`
	// ObservedRestarts is the restart request last carried out.
	ObservedRestarts int64 `json:"observedRestarts,omitempty"`
	// InitRun names the run (generation.restarts) the init containers
	// last ran for, and InitCompleted how many of them finished in it.
	InitRun           string `json:"initRun,omitempty"`
	InitCompleted     int    `json:"initCompleted,omitempty"`
	ProvisioningState string `json:"provisioningState"`
	// ErrorCode and ErrorMessage explain a Failed provisioning state.
	ErrorCode    string            `json:"errorCode,omitempty"`
	ErrorMessage string            `json:"errorMessage,omitempty"`
	IP           string            `json:"ip,omitempty"`
	State        string            `json:"state,omitempty"`
	Events       []Event           `json:"events,omitempty"`
	Containers   []ContainerStatus `json:"containers,omitempty"`
	UpdatedAt    time.Time         `json:"updatedAt"`
}

// ContainerStatus is the instance view of one container.
type ContainerStatus struct {
	Name         string          `json:"name"`
	RestartCount int32           `json:"restartCount"`
	Current      ContainerState  `json:"currentState"`
	Previous     *ContainerState `json:"previousState,omitempty"`
	Events       []Event         `json:"events,omitempty"`
	// Ready is the outcome of the readiness probe (true without one, once
	// running).
	Ready bool `json:"ready,omitempty"`
	// Init marks an init container.
	Init bool `json:"init,omitempty"`
}

// ContainerState is a container's state at one time.
type ContainerState struct {
	State        string    `json:"state"`
	StartTime    time.Time `json:"startTime,omitzero"`
	FinishTime   time.Time `json:"finishTime,omitzero"`
	ExitCode     *int32    `json:"exitCode,omitempty"`
	DetailStatus string    `json:"detailStatus,omitempty"`
}

// Event is an instance-view event; repeats of the same event are counted.
type Event struct {
	Count          int32     `json:"count"`
	FirstTimestamp time.Time `json:"firstTimestamp"`
	LastTimestamp  time.Time `json:"lastTimestamp"`
	Name           string    `json:"name"`
	Message        string    `json:"message"`
	Type           string    `json:"type"` // Normal or Warning
}

// Container returns the status of the named container, or nil.
func (s *GroupStatus) Container(name string) *ContainerStatus {
	for i := range s.Containers {
		if s.Containers[i].Name == name {
			return &s.Containers[i]
		}
	}
	return nil
}

// AddEvent records an event, counting it again when the latest event has
// the same name and message.
func AddEvent(events []Event, now time.Time, name, message, typ string) []Event {
	if n := len(events); n > 0 && events[n-1].Name == name && events[n-1].Message == message {
		events[n-1].Count++
		events[n-1].LastTimestamp = now
		return events
	}
	return append(events, Event{Count: 1, FirstTimestamp: now, LastTimestamp: now, Name: name, Message: message, Type: typ})
}

// GroupKey is the lower-cased subscription/resourcegroup/name triple that
// identifies a group in the store.
func GroupKey(subscription, resourceGroup, name string) string {
	return strings.ToLower(subscription) + "/" + strings.ToLower(resourceGroup) + "/" + strings.ToLower(name)
}

// ResourceGroupKey identifies a resource group in the store.
func ResourceGroupKey(subscription, name string) string {
	return strings.ToLower(subscription) + "/" + strings.ToLower(name)
}
