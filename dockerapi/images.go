package dockerapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/moby/moby/client"
)

// ImageLayers lists every image with its layers' diff IDs.
func (e *Engine) ImageLayers(ctx context.Context) (map[string][]string, error) {
	var list client.ImageListResult
	err := e.within(ctx, e.limit, "ImageList", func(ctx context.Context) (err error) {
		list, err = e.c.ImageList(ctx, client.ImageListOptions{All: true})
		return err
	})
	if err != nil {
		return nil, e.apiError(ctx, "listing the host's images", err)
	}
	out := make(map[string][]string, len(list.Items))
	for _, im := range list.Items {
		var ins client.ImageInspectResult
		err := e.within(ctx, e.limit, "ImageInspect "+im.ID, func(ctx context.Context) (err error) {
			ins, err = e.c.ImageInspect(ctx, im.ID)
			return err
		})
		if err != nil {
			return nil, e.apiError(ctx, "reading the host's layers", err)
		}
		var diffs []string
		if ins.RootFS.Layers != nil {
			diffs = ins.RootFS.Layers
		}
		out[im.ID] = diffs
	}
	return out, nil
}

// Tag names the image src also dst.
func (e *Engine) Tag(ctx context.Context, src, dst string) error {
	if err := e.within(ctx, e.limit, "ImageTag "+dst, func(ctx context.Context) error {
		_, err := e.c.ImageTag(ctx, client.ImageTagOptions{Source: src, Target: dst})
		return err
	}); err != nil {
		return e.apiError(ctx, "naming the image "+dst, err)
	}
	return nil
}

// Load streams a docker-save tarball straight into the daemon (POST
// /images/load): no file on the host; the daemon checks each layer's
// digest and says so in its answer, which is read to the end.
func (e *Engine) Load(ctx context.Context, r io.Reader) error {
	res, err := e.c.ImageLoad(ctx, r, client.ImageLoadWithQuiet(true))
	if err != nil {
		return e.apiError(ctx, "docker load", err)
	}
	defer res.Close()
	dec := json.NewDecoder(res)
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return e.apiError(ctx, "reading docker load's answer", err)
		}
		if m.ErrorDetail != nil || m.Error != "" {
			msg := m.Error
			if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
				msg = m.ErrorDetail.Message
			}
			return fmt.Errorf("docker load: %s", msg)
		}
	}
}
