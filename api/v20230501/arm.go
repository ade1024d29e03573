package v20230501

// ErrorResponse is ARM's error envelope.
type ErrorResponse struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody is the code and message of an ARM error.
type ErrorBody struct {
	Code    string      `json:"code"`
	Message string      `json:"message"`
	Target  string      `json:"target,omitempty"`
	Details []ErrorBody `json:"details,omitempty"`
}

// OperationStatus is the body of an Azure-AsyncOperation status URL.
type OperationStatus struct {
	ID         string               `json:"id"`
	Name       string               `json:"name"`
	Status     string               `json:"status"`
	StartTime  string               `json:"startTime,omitempty"`
	EndTime    string               `json:"endTime,omitempty"`
	Properties *OperationProperties `json:"properties,omitempty"`
	Error      *ErrorBody           `json:"error,omitempty"`
}

// OperationProperties carries the events of the operation's group.
type OperationProperties struct {
	Events []Event `json:"events"`
}

// ResourceGroup is Microsoft.Resources/resourceGroups, the part Berth serves.
type ResourceGroup struct {
	ID         string                   `json:"id,omitempty"`
	Name       string                   `json:"name,omitempty"`
	Type       string                   `json:"type,omitempty"`
	Location   string                   `json:"location"`
	Tags       map[string]string        `json:"tags,omitempty"`
	Properties *ResourceGroupProperties `json:"properties,omitempty"`
}

// ResourceGroupProperties holds the provisioning state.
type ResourceGroupProperties struct {
	ProvisioningState string `json:"provisioningState,omitempty"`
}

// ResourceGroupList is a list of resource groups.
type ResourceGroupList struct {
	Value    []ResourceGroup `json:"value"`
	NextLink string          `json:"nextLink,omitempty"`
}
